"""Provider registration, the flux connection type and the hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_flux.flux_bindings import (
    FluxBindingsUnavailable,
    load_bindings,
    load_flux_core_bindings,
)
from airflow_provider_flux.get_provider_info import get_provider_info
from airflow_provider_flux.hooks.flux import FluxHook, normalize_flux_uri
from airflow_provider_flux.testing import SimulatedFlux
from airflow_provider_flux.testing.dag_test import run_dag

HOOK_DAGS = Path(__file__).parents[1] / "e2e" / "dags" / "flux_hook_dags.py"


def airflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(airflow), *args], capture_output=True, text=True, check=True, env=os.environ
    )


def test_provider_info_is_valid_for_airflow() -> None:
    import jsonschema
    from airflow import providers_manager

    schema = json.loads(
        (Path(providers_manager.__file__).parent / "provider_info.schema.json").read_text()
    )
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-flux"


def test_airflow_lists_the_provider(airflow_db: str) -> None:
    listing = airflow_cli("providers", "list", "--output", "json").stdout
    packages = {p["package_name"] for p in json.loads(listing)}
    assert "airflow-provider-flux" in packages


def test_connection_added_with_the_cli_is_read_back_by_a_task(airflow_db: str) -> None:
    airflow_cli("connections", "add", "flux_cli_host", "--conn-type", "flux",
                "--conn-host", "local:///run/flux/local")  # fmt: skip
    airflow_cli("connections", "add", "flux_cli_uri", "--conn-uri",
                "flux://ssh%3A%2F%2Fcluster%2Frun%2Fflux%2Flocal")  # fmt: skip
    result = run_dag(
        HOOK_DAGS, "flux_read_connections", {"conn_ids": ["flux_cli_host", "flux_cli_uri"]}
    )
    assert result.xcoms["read_uris"] == {
        "flux_cli_host": "local:///run/flux/local",
        "flux_cli_uri": "ssh://cluster/run/flux/local",
    }


def test_flux_connection_type_is_registered(airflow_db: str) -> None:
    out = airflow_cli("providers", "hooks", "--output", "json").stdout
    hooks = {h["connection_type"]: h for h in json.loads(out)}
    assert hooks["flux"]["class"] == "airflow_provider_flux.hooks.flux.FluxHook"


@pytest.mark.parametrize(
    ("stored", "uri"),
    [
        ("local:///run/flux/local", "local:///run/flux/local"),
        ("ssh://node1/var/run/flux/local", "ssh://node1/var/run/flux/local"),
        ("/run/flux/local", "local:///run/flux/local"),
        ("", None),
        (None, None),
        ("  ", None),
    ],
)
def test_uri_forms(stored: str | None, uri: str | None) -> None:
    assert normalize_flux_uri(stored) == uri


def test_not_a_uri_is_refused() -> None:
    with pytest.raises(ValueError, match="'cluster-a' is not a Flux URI"):
        normalize_flux_uri("cluster-a")


def test_missing_default_connection_means_the_default_instance(
    airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_FLUX_DEFAULT", raising=False)
    assert FluxHook().get_uri() is None


def test_missing_named_connection_is_an_error(airflow_db: str) -> None:
    from airflow_provider_flux.version_compat import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException, match="no_such_flux_connection"):
        FluxHook("no_such_flux_connection").get_uri()


def test_hook_opens_a_handle_and_tests_the_connection(
    sim: SimulatedFlux, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_FLUX_SIM", json.dumps({"conn_type": "flux", "host": sim.uri}))
    ok, message = FluxHook("flux_sim").test_connection()
    assert ok, message
    assert sim.uri in message


def test_hook_reports_an_unreachable_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = json.dumps({"conn_type": "flux", "host": "sim:///nonexistent/socket"})
    monkeypatch.setenv("AIRFLOW_CONN_FLUX_BAD", bad)
    ok, message = FluxHook("flux_bad").test_connection()
    assert not ok
    assert "cannot connect to Flux at sim:///nonexistent/socket" in message


def test_sim_uris_select_the_simulated_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_bindings("sim:///x").simulated
    monkeypatch.setenv("FLUX_URI", "sim:///from/env")
    assert load_bindings(None).simulated


def test_missing_flux_bindings_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flux", None)
    with pytest.raises(FluxBindingsUnavailable) as caught:
        load_flux_core_bindings()
    message = str(caught.value)
    assert "pip install 'airflow-provider-flux[flux]'" in message
    assert "flux config builtin python_path" in message


def test_the_connection_form_is_the_same_where_each_airflow_reads_it() -> None:
    """Airflow 3.2+ reads the provider info's; 3.1 only the hook's (its form showed
    Airflow's generic fields before)."""
    from airflow_provider_flux.get_provider_info import get_provider_info
    from airflow_provider_flux.hooks.flux import FluxHook

    (connection,) = get_provider_info()["connection-types"]
    assert FluxHook.get_ui_field_behaviour() == connection["ui-field-behaviour"]
    assert FluxHook.get_ui_field_behaviour()["relabeling"] == {"host": "Flux URI"}


def test_airflow_config_lists_the_executor_section(airflow_db: str) -> None:
    listing = airflow_cli("config", "list", "--section", "flux_executor", "--defaults").stdout
    for option in ("flux_conn_id", "python", "environment", "parallelism", "poll_interval"):
        assert option in listing
    assert airflow_cli("config", "get-value", "flux_executor", "flux_conn_id").stdout.strip() == (
        "flux_default"
    )
