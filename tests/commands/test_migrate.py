"""`credbridge migrate`: every plaintext login moves into an encrypted store, nothing is lost, a re-run is a no-op.

A HOME holding logins the way docker, podman/skopeo, Apptainer and
SingularityCE leave them, migrated into the installed cryptfile helper; the
rewritten files are then read by their real readers (skopeo against the
real registry, the programs' strict decoders for the Apptainer files).
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.clients.test_real_clients import explain, program, run_tool
from tests.conftest import Helper, Installation
from tests.support.process import Result, run
from tests.support.registry import Registry
from tests.support.strictload import StrictLoader


def auth(username: str, secret: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{username}:{secret}".encode()).decode()}


class PlaintextHome:
    """A HOME with logins in every file the tools keep them in; LOGINS[file] = {server: (user, secret)}."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        home, runtime = Path(env["HOME"]), Path(env["XDG_RUNTIME_DIR"])
        self.files = {
            "docker": home / ".docker" / "config.json",
            "containers-runtime": runtime / "containers" / "auth.json",
            "containers-config": home / ".config" / "containers" / "auth.json",
            "apptainer": home / ".apptainer" / "docker-config.json",
            "singularity": home / ".singularity" / "docker-config.json",
        }
        self.logins = {
            name: {
                f"{name}.example.org": (f"{name}-user", f"{name}-secret-{os.urandom(4).hex()}"),
                f"{name}-two.example.org:5000": ("second", f"two-{os.urandom(4).hex()}"),
            }
            for name in self.files
        }
        for name, path in self.files.items():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            config = {
                "auths": {server: auth(*login) for server, login in self.logins[name].items()},
                "HttpHeaders": {"X-Team": "hpc"},
                "x-unknown": [1, {"kept": True}],
            }
            path.write_text(json.dumps(config, indent="\t"))
            path.chmod(0o600)

    def secrets(self) -> list[str]:
        return [secret for logins in self.logins.values() for _user, secret in logins.values()]

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        return {name: (path.read_bytes(), path.stat().st_mtime_ns) for name, path in self.files.items()}


@pytest.fixture
def plaintext_home(installation: Installation, tmp_path: Path) -> PlaintextHome:
    """A login session of its own (HOME, runtime dir) full of plaintext logins; the cryptfile opens with a
    passphrase file, and every helper call is served in process, so nothing outlives the test."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    for directory in (home, runtime):
        directory.mkdir(mode=0o700)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("migrate passphrase\n")
    passphrase.chmod(0o600)
    env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "PATH": f"{installation.bindir}:{os.environ['PATH']}",
        "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase),
        "CREDBRIDGE_NO_AGENT": "1",
    }
    return PlaintextHome(env)


def migrate(installation: Installation, home: PlaintextHome, *args: str) -> Result:
    return run([installation.executable("credbridge"), "migrate", *args], "", home.env)


def cryptfile(installation: Installation, home: PlaintextHome) -> Helper:
    return Helper(installation.executable("docker-credential-cryptfile"), home.env)


def every_login(home: PlaintextHome) -> dict[str, str]:
    return {server: user for logins in home.logins.values() for server, (user, _secret) in logins.items()}


# -- moving ----------------------------------------------------------------------------


def test_every_plaintext_login_moves_into_the_helper_and_leaves_no_secret_behind(
    installation: Installation, plaintext_home: PlaintextHome
) -> None:
    done = migrate(installation, plaintext_home, "--to", "cryptfile")
    assert done.returncode == 0, done.text
    helper = cryptfile(installation, plaintext_home)
    assert json.loads(helper.list().stdout) == every_login(plaintext_home)
    for logins in plaintext_home.logins.values():
        for server, (user, secret) in logins.items():
            assert json.loads(helper.get(server).stdout) == {"ServerURL": server, "Username": user, "Secret": secret}
    for path in plaintext_home.files.values():
        text = path.read_text()
        assert not [secret for secret in plaintext_home.secrets() if secret in text], path
        assert path.stat().st_mode & 0o777 == 0o600


def test_each_file_points_its_reader_at_the_helper_and_keeps_unknown_keys(
    installation: Installation, plaintext_home: PlaintextHome, strict_loader: StrictLoader
) -> None:
    assert migrate(installation, plaintext_home, "--to", "cryptfile").returncode == 0
    for name, path in plaintext_home.files.items():
        config = json.loads(path.read_text())
        assert config["auths"] == {server: {} for server in plaintext_home.logins[name]}
        assert (config["HttpHeaders"], config["x-unknown"]) == ({"X-Team": "hpc"}, [1, {"kept": True}])
        if name.startswith("containers"):  # containers/image reads credHelpers, never credsStore
            assert "credsStore" not in config
            assert config["credHelpers"] == {server: "cryptfile" for server in plaintext_home.logins[name]}
        else:
            assert config["credsStore"] == "cryptfile" and "credHelpers" not in config
    for name in ("apptainer", "singularity"):
        strict_loader.docker_config(plaintext_home.files[name])


def test_a_second_run_changes_nothing(installation: Installation, plaintext_home: PlaintextHome) -> None:
    assert migrate(installation, plaintext_home, "--to", "cryptfile").returncode == 0
    before = plaintext_home.snapshot()
    again = migrate(installation, plaintext_home, "--to", "cryptfile")
    assert again.returncode == 0, again.text
    assert plaintext_home.snapshot() == before
    assert "nothing to move" in again.stdout.decode()


def test_dry_run_names_every_login_and_writes_nothing(
    installation: Installation, plaintext_home: PlaintextHome
) -> None:
    before = plaintext_home.snapshot()
    done = migrate(installation, plaintext_home, "--to", "cryptfile", "--dry-run")
    assert done.returncode == 0, done.text
    assert plaintext_home.snapshot() == before
    assert all(server in done.stdout.decode() for server in every_login(plaintext_home))
    assert not any(secret in done.stdout.decode() for secret in plaintext_home.secrets())
    assert cryptfile(installation, plaintext_home).list().stdout == b"{}\n"


def test_a_plaintext_backup_is_kept_only_when_asked(installation: Installation, plaintext_home: PlaintextHome) -> None:
    docker = plaintext_home.files["docker"]
    original = docker.read_bytes()
    assert migrate(installation, plaintext_home, "--to", "cryptfile").returncode == 0
    assert not list(docker.parent.glob("config.json.credbridge-backup-*"))
    plaintext_home.files["docker"].write_bytes(original)
    assert migrate(installation, plaintext_home, "--to", "cryptfile", "--backup").returncode == 0
    [backup] = docker.parent.glob("config.json.credbridge-backup-*")
    assert backup.read_bytes() == original and backup.stat().st_mode & 0o777 == 0o600


def test_a_target_that_fails_leaves_every_file_unchanged(
    installation: Installation, plaintext_home: PlaintextHome
) -> None:
    before = plaintext_home.snapshot()
    locked = {**plaintext_home.env, "CREDBRIDGE_PASSPHRASE_FILE": ""}
    done = run([installation.executable("credbridge"), "migrate", "--to", "cryptfile"], "", locked)
    assert done.returncode == 1 and b"locked" in done.stderr, done.text
    assert plaintext_home.snapshot() == before


def test_plaintext_stores_are_refused_as_targets(installation: Installation, plaintext_home: PlaintextHome) -> None:
    done = migrate(installation, plaintext_home, "--to", "apptainer")
    assert done.returncode == 1 and b"plaintext" in done.stderr, done.text


def test_without_to_the_target_is_dockers_creds_store(
    installation: Installation, plaintext_home: PlaintextHome
) -> None:
    """(Without credsStore either, the router: tests/commands/test_headless_first_hour.py.)"""
    docker = plaintext_home.files["docker"]
    docker.write_text(json.dumps({**json.loads(docker.read_text()), "credsStore": "cryptfile"}))
    assert migrate(installation, plaintext_home).returncode == 0
    assert json.loads(cryptfile(installation, plaintext_home).list().stdout) == every_login(plaintext_home)


def test_kill_during_migrate_loses_nothing_and_a_rerun_finishes(
    installation: Installation, plaintext_home: PlaintextHome
) -> None:
    chance = random.Random(11)
    wanted = {server: secret for logins in plaintext_home.logins.values() for server, (_u, secret) in logins.items()}
    helper = cryptfile(installation, plaintext_home)
    for _attempt in range(8):
        process = subprocess.Popen(
            [installation.executable("credbridge"), "migrate", "--to", "cryptfile"],
            env=plaintext_home.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(chance.uniform(0.2, 6.0))  # one migrate takes seconds (a KDF per helper call with a passphrase file)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        in_files = {
            server: (json.loads(path.read_text())["auths"].get(server) or {})
            for path in plaintext_home.files.values()
            for server in json.loads(path.read_text())["auths"]
        }
        in_store = json.loads(helper.list().stdout)
        for server in wanted:
            assert in_files.get(server) or server in in_store, f"{server} is neither in its file nor in the store"
    finished = migrate(installation, plaintext_home, "--to", "cryptfile")
    assert finished.returncode == 0, finished.text
    for server, secret in wanted.items():
        assert json.loads(helper.get(server).stdout)["Secret"] == secret


# -- the rewritten files, read by their real reader ----------------------------------------


def test_skopeo_logs_in_with_the_migrated_containers_auth_file(
    installation: Installation, plaintext_home: PlaintextHome, registry: Registry, tmp_path: Path
) -> None:
    auth_file = plaintext_home.files["containers-config"]
    auth_file.write_text(json.dumps({"auths": {registry.host: auth(registry.username, registry.password)}}))
    assert migrate(installation, plaintext_home, "--to", "cryptfile").returncode == 0
    assert registry.password not in auth_file.read_text()
    registries_conf = tmp_path / "registries.conf"
    registries_conf.write_text("")
    env = {**plaintext_home.env, "CONTAINERS_REGISTRIES_CONF": str(registries_conf)}
    inspect = run_tool(
        [
            program("skopeo", env),
            "--registries-conf",
            str(registries_conf),
            "inspect",
            "--tls-verify=false",
            "--authfile",
            str(auth_file),
            f"docker://{registry.test_image}",
        ],
        env,
    )
    assert inspect.returncode == 0, explain(inspect)
