"""The package's layout rules (docs/design.md, "The packages"): each layer imports
only the layers below it, the job model knows nothing of Airflow, nothing imports a
private name of another package, no two modules share a name, none is over 500 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import airflow_provider_flux

PACKAGE = "airflow_provider_flux"
ROOT = Path(airflow_provider_flux.__file__).parent

# Each top-level part of the package and its layer: a module may import its own
# part and those of lower layers only.
LAYERS = {
    "__init__": 0,  # the version, nothing else
    "job": 0,
    "jobspec": 1,
    "version_compat": 1,
    "exceptions": 1,
    "config": 1,
    "flux_bindings": 1,
    "flux_uri": 1,
    "function_job": 1,
    "aio": 2,
    "hooks": 3,
    "wait": 3,
    "instance_events": 3,
    "triggers": 4,
    "sensors": 5,
    "operators": 5,
    "decorators": 6,
    "executors": 6,
    "get_provider_info": 6,
    "testing": 6,
}
# The one import upward: the bindings loader serves ``sim://`` URIs with the
# simulator's stand-in for flux-core's bindings, imported only for such a URI.
ALLOWED_UPWARD = {("flux_bindings", f"{PACKAGE}.testing.bindings")}
MAX_LINES = 500
# Names that stand more than once on purpose: Airflow's provider convention puts the
# hook, operator, sensor and trigger of one integration in ``<kind>/flux.py`` (public
# paths), and the simulator's stand-in for flux-core's bindings names its modules
# after flux's own (``flux.job``, ``flux.constants``), so code reads the same on both.
SHARED_NAMES = {"flux"}
STAND_IN = f"{PACKAGE}.testing.bindings"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # the names taken from it (from ... import ...)
    line: int

    def __str__(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.module}:{self.line} imports {self.target}{names}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def imports(path: Path) -> Iterator[Import]:
    """Every import in a module, at any depth (in functions and ``TYPE_CHECKING`` too)."""
    module = module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from package import submodule`` imports the submodule.
            modules_taken = [a.name for a in node.names if is_module(f"{node.module}.{a.name}")]
            for name in modules_taken:
                yield Import(module, f"{node.module}.{name}", (), node.lineno)
            names = tuple(a.name for a in node.names if a.name not in modules_taken)
            if names:
                yield Import(module, node.module, names, node.lineno)


def is_module(dotted: str) -> bool:
    """Whether ``dotted`` is a module or package of this provider."""
    if not dotted.startswith(f"{PACKAGE}."):
        return False
    path = ROOT.joinpath(*dotted.split(".")[1:])
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def part(dotted: str) -> str:
    """``job`` for ``airflow_provider_flux.job.event``; ``__init__`` for the root."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def own_imports() -> list[Import]:
    return [
        each
        for path in modules()
        for each in imports(path)
        if each.target == PACKAGE or each.target.startswith(f"{PACKAGE}.")
    ]


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part(module_name(path)) for path in modules()}
    assert parts == set(LAYERS)


def test_imports_read_downward() -> None:
    upward = [
        str(each)
        for each in own_imports()
        if LAYERS[part(each.target)] > LAYERS[part(each.module)]
        and (part(each.module), each.target) not in ALLOWED_UPWARD
    ]
    assert upward == []


def test_nothing_below_the_triggers_imports_them() -> None:
    above = {name for name, layer in LAYERS.items() if layer >= LAYERS["triggers"]}
    below = [
        str(each)
        for each in own_imports()
        if part(each.target) == "triggers" and part(each.module) not in above
    ]
    assert below == []


def test_the_job_model_imports_nothing_of_airflow_nor_of_the_rest_of_the_provider() -> None:
    job_model = [each for path in (ROOT / "job").rglob("*.py") for each in imports(path)]
    assert job_model, "the job model's imports were not read"
    outside = [
        str(each)
        for each in job_model
        if each.target.split(".")[0] == "airflow"
        or (each.target.startswith(f"{PACKAGE}.") and part(each.target) != "job")
    ]
    assert outside == []


def test_no_module_imports_a_private_name_of_another_package() -> None:
    def package(dotted: str) -> str:
        return dotted.rsplit(".", 1)[0]

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    offenders = []
    for path in modules():
        importer = module_name(path)
        own = importer if path.name == "__init__.py" else package(importer)
        for each in imports(path):
            if each.target == "__future__":
                continue
            segments = each.target.split(".")
            target_package = (
                each.target
                if not any(map(private, segments))
                else ".".join(segments[: next(i for i, s in enumerate(segments) if private(s))])
            )
            crosses = not (target_package == own or target_package.startswith(f"{own}."))
            if crosses and (any(map(private, segments)) or any(map(private, each.names))):
                offenders.append(str(each))
    assert offenders == []


def test_no_two_modules_share_a_name() -> None:
    names: dict[str, list[str]] = {}
    for path in modules():
        module = module_name(path)
        if module.startswith(f"{STAND_IN}."):
            continue
        names.setdefault(module.rsplit(".", 1)[-1], []).append(module)
    shared = {name: where for name, where in names.items() if len(where) > 1}
    assert set(shared) <= SHARED_NAMES, shared


@pytest.mark.parametrize("path", modules(), ids=lambda path: module_name(path))
def test_no_module_is_over_500_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
