"""The store table (credbridge.stores.catalog) is the one place a store is declared: everything else
that lists stores (the installed executables, the wheel's packages, the agent's environment filter,
doctor's PATH check) must agree with it, so that a forgotten edit fails here and not on a user's pull."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from credbridge import wire
from credbridge.stores import catalog

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = (REPO / "pyproject.toml").read_text()


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    return tomllib.loads(PYPROJECT)


def test_every_store_is_one_installed_executable_and_nothing_else_is() -> None:
    scripts = _pyproject()["project"]["scripts"]
    assert set(scripts) == set(catalog.PROGRAMS)
    assert scripts["credbridge"] == "credbridge.commands.cli:main"


@pytest.mark.parametrize("name", sorted(catalog.STORES))
def test_each_executable_serves_the_store_it_is_named_after(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module_name, _, function = _pyproject()["project"]["scripts"][f"docker-credential-{name}"].partition(":")
    package, _, leaf = module_name.rpartition(".")
    assert package == "credbridge.helpers"  # installed from helpers/ (pyproject's package-dir)
    spec = importlib.util.spec_from_file_location(module_name, REPO / "helpers" / f"{leaf}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    served = []
    monkeypatch.setattr(module, "run_helper", served.append)
    getattr(module, function)()
    assert served == [name]


@pytest.mark.parametrize("name", sorted(catalog.STORES))
def test_each_factory_exists_and_its_variables_reach_the_agent(name: str) -> None:
    module_name, _, factory = catalog.STORES[name][0].partition(":")
    assert callable(getattr(importlib.import_module(module_name), factory))
    for prefix in catalog.STORES[name][1]:
        assert prefix in wire.RELEVANT_ENV_PREFIXES
        assert wire.relevant_env({f"{prefix}SOMETHING": "x"}) == {f"{prefix}SOMETHING": "x"}


def test_the_wheel_holds_every_package_of_the_source_tree() -> None:
    source = REPO / "shared"
    packages = {
        str(init.parent.relative_to(source)).replace("/", ".")
        for init in source.rglob("__init__.py")
        if "egg-info" not in str(init)
    }
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    assert packages | {"credbridge.helpers"} == listed


def test_the_hot_path_imports_the_table_without_importing_any_store() -> None:
    code = (
        "import sys; from credbridge import wire; print(sorted(m for m in sys.modules if m.startswith('credbridge')))"
    )
    import subprocess

    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "shared")},
        check=True,
    )
    assert done.stdout.strip() == str(
        sorted(["credbridge", "credbridge.wire", "credbridge.stores", "credbridge.stores.catalog"])
    )


def test_every_store_of_the_catalog_runs_the_contract() -> None:
    """A store added to the catalog without a test environment would go untested."""
    from tests.contract.test_store_contract import STORES as CONTRACT_STORES

    assert {name.partition(":")[0] for name in CONTRACT_STORES} == set(catalog.STORES)
