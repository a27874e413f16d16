"""The sdist and the wheel as users get them: `twine check` passes, and the wheel holds
what an installed provider needs (type information, the simulator's eventlogs, the
license, Airflow's entry point)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from airflow_provider_flux import __version__

ROOT = Path(__file__).parents[2]
EVENTLOGS = sorted(p.name for p in (ROOT / "airflow_provider_flux/testing/eventlogs").glob("*"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def test_twine_check_passes(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wheel_holds_what_an_installed_provider_needs(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    info = f"airflow_provider_flux-{__version__}.dist-info"
    assert "airflow_provider_flux/py.typed" in names
    assert {f"airflow_provider_flux/testing/eventlogs/{name}" for name in EVENTLOGS} <= names
    assert f"{info}/licenses/LICENSE" in names
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_provider_flux.get_provider_info:get_provider_info" in (
        entry_points
    )
    assert not any(name.startswith(("tests/", "example_dags/", "scripts/")) for name in names)


def test_the_sdist_holds_the_license_and_the_changelog(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.rst", "README.md", "pyproject.toml"} <= names


def test_the_declared_airflow_range_starts_at_the_lowest_version_ci_tests(dist: Path) -> None:
    """pip refuses any Airflow below the one the lowest-version tests run on."""
    (wheel,) = dist.glob("*.whl")
    info = f"airflow_provider_flux-{__version__}.dist-info"
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    requirements = [
        Requirement(line.split(":", 1)[1].strip())
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    (airflow,) = [r for r in requirements if r.name == "apache-airflow" and r.marker is None]
    pins = (ROOT / "tests/constraints/airflow-lowest.txt").read_text().splitlines()
    (lowest,) = [line.split("==")[1] for line in pins if line.startswith("apache-airflow==")]
    assert airflow.specifier.contains(lowest)
    major, minor, micro = Version(lowest).release
    below = f"{major}.{minor}.{micro - 1}" if micro else f"{major}.{minor - 1}.99"
    assert not airflow.specifier.contains(below)
    assert not airflow.specifier.contains("3.0.6")
    requires_python = next(
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Python:")
    )
    tested = SpecifierSet(requires_python)
    assert all(tested.contains(f"3.{minor}.0") for minor in (10, 11, 12, 13))
    assert not tested.contains("3.9.0")
    assert not tested.contains("3.14.0")  # untested: these machines have no Python 3.14
