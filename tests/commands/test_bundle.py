"""The PyInstaller onedir bundle: built by build/build.sh, installed by ./install.sh --bundle.

The store contract and the real-client tests run against the bundle too
(`across_installations`); these are what only a bundle can get wrong: its
shape, running without any Python, starting the agent from the bundle,
never writing into itself, and installing and uninstalling cleanly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import tomllib

from tests.conftest import REPO, Installation, fresh_agent_runtime, install_env, installed
from tests.support import keyring_session
from tests.support.process import Result, run


def console_scripts() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime: what a run-time write would change."""
    return {str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns) for path in root.rglob("*")}


@pytest.fixture
def fresh_runtime(
    bundle_installation: Installation, private_keyring: keyring_session.PrivateKeyring, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The private keyring with the bundle on PATH and a runtime dir no agent has used."""
    with fresh_agent_runtime(bundle_installation, private_keyring, tmp_path) as env:
        yield env


def keyring(installation: Installation, env: dict[str, str], action: str, stdin: str = "") -> Result:
    return run([installation.executable("docker-credential-keyring"), action], stdin, env)


def agent_pid(env: dict[str, str]) -> int:
    """The pid the agent wrote into its lock file, once its socket is up."""
    directory = Path(env["XDG_RUNTIME_DIR"]) / "credbridge"
    deadline = time.monotonic() + 20
    while not list(directory.glob("agent-*.sock")):
        assert time.monotonic() < deadline, "no agent socket appeared"
        time.sleep(0.05)
    [lock] = directory.glob("agent-*.lock")
    return int(lock.read_text())


def sockets_of(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))


def test_every_console_script_is_an_executable_of_one_shared_runtime(built_bundle: Path) -> None:
    executables = {path.name for path in built_bundle.iterdir() if path.is_file() and os.access(path, os.X_OK)}
    assert executables == console_scripts()
    assert [path.name for path in built_bundle.iterdir() if path.is_dir()] == ["_internal"]


def test_links_on_path_point_into_the_installed_bundle(bundle_installation: Installation) -> None:
    bundle = bundle_installation.home / ".local" / "share" / "credbridge" / "bundle"
    for name in console_scripts():
        assert Path(bundle_installation.executable(name)).resolve() == bundle / name
    assert not (bundle_installation.home / ".local" / "share" / "credbridge" / "venv").exists()


def test_a_bundled_helper_runs_without_any_python(bundle_installation: Installation, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/nonexistent", "CREDBRIDGE_NO_AGENT": "1"}
    version = run([bundle_installation.executable("docker-credential-apptainer"), "version"], b"", env)
    assert (version.returncode, version.stdout.split()[:2]) == (0, [b"docker-credential-apptainer", b"(credbridge)"])
    listed = run([bundle_installation.executable("docker-credential-apptainer"), "list"], b"", env)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, b"{}\n", b"")


def test_a_bundled_helper_error_is_one_line_without_traceback(
    bundle_installation: Installation, tmp_path: Path
) -> None:
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "CREDBRIDGE_NO_AGENT": "1",
        "CREDBRIDGE_CRYPTFILE": str(tmp_path / "credentials.cbf"),
    }
    login = '{"ServerURL": "registry.example", "Username": "u", "Secret": "s"}'  # a store needs the key
    result = run([bundle_installation.executable("docker-credential-cryptfile"), "store"], login, env)
    assert result.returncode == 1
    assert result.stdout.count(b"\n") == 1 and b"credbridge unlock" in result.stdout
    assert b"Traceback" not in result.stdout + result.stderr


def test_first_bundled_call_starts_the_bundles_own_agent_which_serves_the_next(
    bundle_installation: Installation, fresh_runtime: dict[str, str]
) -> None:
    first = keyring(bundle_installation, fresh_runtime, "list")
    assert (first.returncode, first.stdout) == (0, b"{}\n")
    agent = agent_pid(fresh_runtime)
    bundle = bundle_installation.home / ".local" / "share" / "credbridge" / "bundle"
    assert Path(f"/proc/{agent}/exe").resolve() == bundle / "credbridge"
    sockets_before = sockets_of(agent)
    stored = keyring(
        bundle_installation, fresh_runtime, "store", '{"ServerURL":"r.example","Username":"u","Secret":"s"}'
    )
    assert stored.returncode == 0, stored.text
    assert json.loads(keyring(bundle_installation, fresh_runtime, "get", "r.example").stdout)["Secret"] == "s"
    assert sockets_of(agent) > sockets_before, "the agent did not serve the call (no D-Bus connection opened)"


def test_the_bundle_never_writes_into_itself(bundle_installation: Installation, fresh_runtime: dict[str, str]) -> None:
    """Compiled bytecode ships inside the bundle: no __pycache__, no change, in process or in the agent."""
    bundle = bundle_installation.home / ".local" / "share" / "credbridge" / "bundle"
    before = tree(bundle)
    for env in (fresh_runtime, {**fresh_runtime, "CREDBRIDGE_NO_AGENT": "1"}):
        assert (
            keyring(
                bundle_installation, env, "store", '{"ServerURL":"w.example","Username":"u","Secret":"s"}'
            ).returncode
            == 0
        )
        assert keyring(bundle_installation, env, "get", "w.example").returncode == 0
        assert keyring(bundle_installation, env, "erase", "w.example").returncode == 0
    assert tree(bundle) == before


def test_bundle_install_twice_then_uninstall_leaves_nothing_of_ours(built_bundle: Path, tmp_path: Path) -> None:
    bindir = tmp_path / ".local" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "someone-elses-tool").write_text("#!/bin/sh\n")
    installed(tmp_path, "--bundle", str(built_bundle))
    installation = installed(tmp_path, "--bundle", str(built_bundle))
    assert sorted(path.name for path in bindir.iterdir()) == sorted(console_scripts() | {"someone-elses-tool"})
    bundle = tmp_path / ".local" / "share" / "credbridge" / "bundle"
    assert oct(bundle.stat().st_mode & 0o777) == "0o700"
    assert oct((bundle / "_internal").stat().st_mode & 0o777) == "0o700"
    assert run([installation.executable("credbridge"), "--version"], b"", install_env(tmp_path)).returncode == 0
    removed = subprocess.run(
        [str(REPO / "install.sh"), "--uninstall"], env=install_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert removed.returncode == 0, removed.stderr
    assert sorted(path.name for path in bindir.iterdir()) == ["someone-elses-tool"]
    assert not (tmp_path / ".local" / "share" / "credbridge").exists()


def test_bundle_install_refuses_a_directory_that_is_no_bundle(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(REPO / "install.sh"), "--bundle", str(tmp_path)],
        env=install_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "is not a credbridge bundle: build one with build/build.sh" in done.stderr
    assert not (tmp_path / ".local").exists()


def test_switching_between_venv_and_bundle_installs_replaces_the_other_kind(built_bundle: Path, tmp_path: Path) -> None:
    prefix = tmp_path / ".local" / "share" / "credbridge"
    launcher = tmp_path / ".local" / "bin" / "docker-credential-keyring"
    installed(tmp_path, "--bundle", str(built_bundle))
    installed(tmp_path)
    assert not launcher.is_symlink() and launcher.read_text().startswith("#!")
    assert sorted(path.name for path in prefix.iterdir()) == ["venv"]
    installed(tmp_path, "--bundle", str(built_bundle))
    assert launcher.resolve() == prefix / "bundle" / "docker-credential-keyring"
    assert sorted(path.name for path in prefix.iterdir()) == ["bundle"]
