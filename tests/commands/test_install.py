"""./install.sh: one command, no root, idempotent, HOME decides where, --uninstall undoes it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO


def install(home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": os.environ["PATH"], **extra_env}
    if "PIP_CACHE_DIR" not in env:
        env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
    return subprocess.run([str(REPO / "install.sh"), *args], env=env, capture_output=True, text=True, timeout=600)


def test_install_twice_then_uninstall_leaves_nothing_of_ours(tmp_path: Path) -> None:
    bindir = tmp_path / ".local" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "someone-elses-tool").write_text("#!/bin/sh\n")
    first = install(tmp_path)
    assert first.returncode == 0, first.stderr
    launcher = bindir / "docker-credential-keyring"
    before = launcher.read_text()
    second = install(tmp_path)
    assert second.returncode == 0, second.stderr
    assert launcher.read_text() == before
    assert launcher.read_text().splitlines()[0].endswith(" -IS"), "launchers start Python isolated, without site"
    version = subprocess.run(
        [str(launcher), "version"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "CREDBRIDGE_NO_AGENT": "1"},
    )
    assert (version.returncode, version.stdout.split()[:2]) == (0, ["docker-credential-keyring", "(credbridge)"])
    removed = install(tmp_path, "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert sorted(path.name for path in bindir.iterdir()) == ["someone-elses-tool"]
    assert not (tmp_path / ".local" / "share" / "credbridge").exists()


def test_bindir_chooses_where_the_launchers_go(tmp_path: Path) -> None:
    elsewhere = tmp_path / "opt-bin"
    done = install(tmp_path, BINDIR=str(elsewhere))
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "docker-credential-keyring").exists() and (elsewhere / "credbridge").exists()
    assert not (tmp_path / ".local" / "bin").exists()


def test_reinstalling_stops_the_agent_of_the_old_code(tmp_path: Path) -> None:
    """An agent left running would serve the old code (and load modules from the files replaced under it)."""
    from tests.matrix.test_matrix_trust_agent import agents_of_home
    from tests.stores.test_agent import wait_for

    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    assert install(tmp_path, XDG_RUNTIME_DIR=str(runtime)).returncode == 0
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime)}
    listed = subprocess.run(
        [str(tmp_path / ".local" / "bin" / "docker-credential-apptainer"), "list"],
        capture_output=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed
    wait_for(lambda: list((runtime / "credbridge").glob("agent-*.sock")))
    [agent] = agents_of_home(tmp_path)
    again = install(tmp_path, XDG_RUNTIME_DIR=str(runtime))
    assert again.returncode == 0, again.stderr
    try:
        wait_for(lambda: agent not in agents_of_home(tmp_path))
    finally:
        for pid in agents_of_home(tmp_path):
            os.kill(pid, 9)
