"""The first hour on a headless machine, as a new user follows the README: no D-Bus at all.

ssh sessions, HPC login nodes and CI runners: `credbridge setup`, `migrate`,
`doctor`, `list` and the helpers, run from a fresh HOME by the installed
commands. Every hint they print must be a command that works, and no file
the user did not ask for may stay in their tools' directories.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.clients.test_real_clients import explain, private_podman, program, run_tool
from tests.conftest import REPO, Helper, Installation, install_env
from tests.support import passstore
from tests.support.process import Result, run
from tests.support.registry import Registry, start_registry

PASSPHRASE = "first hour passphrase"


class Headless:
    """A fresh HOME and runtime dir, our commands first on PATH, no session bus, every call in process."""

    def __init__(self, installation: Installation, root: Path) -> None:
        self.installation = installation
        self.home, self.runtime = root / "home", root / "run"
        for directory in (self.home, self.runtime):
            directory.mkdir(mode=0o700)
        self.passphrase_file = root / "passphrase"
        self.passphrase_file.write_text(PASSPHRASE + "\n")
        self.passphrase_file.chmod(0o600)
        self.env = {
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "LANG": "C.UTF-8",
            "PATH": f"{installation.bindir}:{os.environ['PATH']}",
            "CREDBRIDGE_NO_AGENT": "1",
        }

    @property
    def unlocked(self) -> dict[str, str]:
        """The environment of a batch job that opens the cryptfile with a passphrase file."""
        return {**self.env, "CREDBRIDGE_PASSPHRASE_FILE": str(self.passphrase_file)}

    def credbridge(self, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> Result:
        return run([self.installation.executable("credbridge"), *args], stdin, env or self.env, timeout=120)

    def helper(self, name: str, env: dict[str, str] | None = None) -> Helper:
        return Helper(self.installation.executable(f"docker-credential-{name}"), env or self.env)

    def write_docker_config(self, document: dict) -> Path:
        path = self.home / ".docker" / "config.json"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(json.dumps(document))
        path.chmod(0o600)
        return path


def plaintext(username: str, secret: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{username}:{secret}".encode()).decode()}


@pytest.fixture
def headless(installation: Installation, tmp_path: Path) -> Headless:
    return Headless(installation, tmp_path)


def assert_ok(result: Result) -> str:
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    return result.text


def assert_fails_with(result: Result, *words: str) -> str:
    """One line on stderr naming the cause and the fix; nothing half-done on stdout."""
    message = result.stderr.decode()
    assert result.returncode == 1 and message.count("\n") == 1, (result.stdout + result.stderr).decode()
    assert "Traceback" not in message
    for word in words:
        assert word in message, message
    return message


# -- no file left that the user did not ask for ------------------------------------------------


def test_no_lock_file_stays_beside_the_users_files(headless: Headless) -> None:
    headless.write_docker_config({"auths": {"moved.example.org": plaintext("alice", "moved-secret")}})
    assert_ok(headless.credbridge("setup", "--tool", "docker", "--tool", "podman", env=headless.unlocked))
    assert_ok(headless.credbridge("migrate", env=headless.unlocked))
    assert_ok(
        headless.credbridge(
            "login",
            "--no-verify",
            "--password-stdin",
            "-u",
            "bob",
            "login.example.org",
            env=headless.unlocked,
            stdin="login-secret",
        )
    )
    stored = headless.helper("singularity").store("sing.example.org", "carol", "sing-secret")
    assert stored.returncode == 0, stored
    assert_ok(headless.credbridge("unlock", env=headless.env, stdin=PASSPHRASE + "\n"))
    assert_ok(headless.credbridge("lock"))
    assert (headless.home / ".docker" / "config.json").exists()
    assert (headless.home / ".singularity" / "docker-config.json").exists()
    assert sorted(headless.home.rglob("*.lock")) == []


#: Adds one to the number in a file, read-modify-write under atomicfile's lock, COUNT times.
COUNTER = """
import sys
from credbridge.files import atomicfile
path, count = sys.argv[1], int(sys.argv[2])
for _ in range(count):
    with atomicfile.exclusive(path):
        found = atomicfile.read(path)
        atomicfile.replace(path, str(int(found[0]) + 1 if found else 1).encode())
"""


def test_the_write_lock_still_excludes_every_other_writer(installation: Installation, tmp_path: Path) -> None:
    """The lock file comes and goes with every write: no two writers may ever hold it at once."""
    python = installation.home / ".local" / "share" / "credbridge" / "venv" / "bin" / "python"
    counter = tmp_path / "shared" / "counter"
    writers = [subprocess.Popen([str(python), "-c", COUNTER, str(counter), "60"]) for _ in range(4)]
    assert [writer.wait(timeout=300) for writer in writers] == [0] * 4
    assert counter.read_text() == "240"
    assert sorted(path.name for path in counter.parent.iterdir()) == ["counter"]


# -- credbridge migrate ---------------------------------------------------------------------------


def test_migrate_with_nothing_configured_moves_into_the_router(headless: Headless) -> None:
    """`doctor` says `fix: credbridge migrate`: that command must work on a HOME setup never touched."""
    config = headless.write_docker_config({"auths": {"plain.example.org": plaintext("alice", "plain-secret")}})
    out = assert_ok(headless.credbridge("migrate", env=headless.unlocked))
    assert "docker-credential-credbridge" in out and "Apptainer" not in out and "Singularity" not in out, out
    assert json.loads(config.read_text()) == {"auths": {"plain.example.org": {}}, "credsStore": "credbridge"}
    got = headless.helper("credbridge", headless.unlocked).get("plain.example.org")
    assert json.loads(got.stdout)["Secret"] == "plain-secret"


def test_migrate_to_a_missing_store_names_the_flag_and_moves_nothing(headless: Headless) -> None:
    document = {"auths": {"plain.example.org": plaintext("alice", "plain-secret")}}
    config = headless.write_docker_config(document)
    refused = headless.credbridge("migrate", "--to", "nosuchstore", env=headless.unlocked)
    message = assert_fails_with(refused, "docker-credential-nosuchstore is not on PATH", "--to")
    assert "--store" not in message and refused.stdout == b"", refused.stdout
    assert json.loads(config.read_text()) == document


# -- leaving docker-credential-pass behind ------------------------------------------------------

PASS_LOGINS = {
    "https://index.docker.io/v1/": ("hubuser", "hub-secret"),
    "ghcr.io": ("octocat", "ghcr-token"),
    "registry.example.org:5000": ("ci", "ci-secret"),
}


@pytest.fixture
def pass_store(headless: Headless, tmp_path: Path):
    """A real GnuPG key (no passphrase: no pinentry prompt) and `pass init` store in a private GNUPGHOME,
    holding PASS_LOGINS through Go's docker-credential-pass, which ~/.docker/config.json names."""
    with passstore.pass_store(headless.env, tmp_path) as env:
        headless.env.update(GNUPGHOME=env["GNUPGHOME"], PASSWORD_STORE_DIR=env["PASSWORD_STORE_DIR"])
        go_pass = Helper(passstore.GO_PASS, headless.env)
        for server, (username, secret) in PASS_LOGINS.items():
            assert go_pass.store(server, username, secret).returncode == 0
        headless.write_docker_config(
            {"auths": {server: {} for server in PASS_LOGINS}, "credsStore": "pass", "credHelpers": {"ghcr.io": "pass"}}
        )
        yield go_pass


def test_migrate_from_pass_moves_verifies_points_every_tool_and_erases(headless: Headless, pass_store: Helper) -> None:
    unlocked = {**headless.unlocked, **{name: headless.env[name] for name in ("GNUPGHOME", "PASSWORD_STORE_DIR")}}
    out = assert_ok(headless.credbridge("migrate", "--from", "pass", "--erase", env=unlocked))
    assert not [secret for _user, secret in PASS_LOGINS.values() if secret in out], out
    router = headless.helper("credbridge", unlocked)
    for server, (username, secret) in PASS_LOGINS.items():
        got = router.get(server)
        assert json.loads(got.stdout) == {"ServerURL": server, "Username": username, "Secret": secret}, got
    docker_config = json.loads((headless.home / ".docker" / "config.json").read_text())
    assert (docker_config["credsStore"], docker_config["credHelpers"]) == ("credbridge", {"ghcr.io": "credbridge"})
    assert (
        "credbridge"
        in (headless.home / ".config" / "containers" / "registries.conf.d" / "99-credbridge.conf").read_text()
    )
    assert json.loads(pass_store.list().stdout) == {}


def test_migrate_from_pass_keeps_them_in_pass_without_erase(headless: Headless, pass_store: Helper) -> None:
    unlocked = {**headless.unlocked, **{name: headless.env[name] for name in ("GNUPGHOME", "PASSWORD_STORE_DIR")}}
    assert_ok(headless.credbridge("migrate", "--from", "pass", env=unlocked))
    assert json.loads(pass_store.list().stdout) == {server: user for server, (user, _s) in PASS_LOGINS.items()}
    assert json.loads(headless.helper("credbridge", unlocked).list().stdout) == json.loads(pass_store.list().stdout)


# -- usage and help -------------------------------------------------------------------------------


def test_a_mistyped_option_shows_the_commands_own_usage(headless: Headless) -> None:
    mistyped = headless.credbridge("list", "--jsn")
    assert mistyped.returncode == 2 and mistyped.stderr.decode().startswith("usage: credbridge list "), mistyped.stderr


@pytest.mark.parametrize(
    "command",
    ["setup", "unlock", "passwd", "lock", "exec", "authfile", "migrate", "agent", "stop-agent", "login", "doctor"],
)
def test_each_commands_help_opens_with_the_line_the_top_level_help_gives_it(headless: Headless, command: str) -> None:
    overview = assert_ok(headless.credbridge("--help"))
    line = re.search(rf"^    {command} +(.*)$", overview, re.MULTILINE).group(1).split()[:4]
    own = " ".join(assert_ok(headless.credbridge(command, "--help")).split())
    assert " ".join([line[0].capitalize(), *line[1:]]) in own, own


# -- PATH -----------------------------------------------------------------------------------------


def test_setup_and_its_dry_run_both_say_that_path_lacks_the_helpers(headless: Headless) -> None:
    """Run as `~/.local/bin/credbridge setup` from a shell whose PATH lacks ~/.local/bin."""
    without_bindir = {**headless.env, "PATH": os.environ["PATH"]}
    for dry_run in (["--dry-run"], []):
        refused = headless.credbridge("setup", "--tool", "docker", *dry_run, env=without_bindir)
        assert_fails_with(refused, "not on PATH", str(headless.installation.bindir), "export PATH=", "~/.profile")
        assert b"would set" not in refused.stdout
    assert not (headless.home / ".docker").exists()


def test_install_says_how_to_put_its_bindir_on_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    done = subprocess.run(
        [str(REPO / "install.sh")],
        env={**install_env(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert f"{home}/.local/bin is not on PATH" in done.stdout
    assert 'export PATH="$HOME/.local/bin:$PATH"' in done.stdout and "~/.profile" in done.stdout, done.stdout


# -- credbridge list ------------------------------------------------------------------------------


def test_list_says_a_plaintext_docker_login_is_in_dockers_file(headless: Headless) -> None:
    config = headless.write_docker_config({"auths": {"plain.example.org": plaintext("alice", "plain-secret")}})
    listed = assert_ok(headless.credbridge("list", env=headless.unlocked))
    [row] = [line for line in listed.splitlines() if line.startswith("plain.example.org")]
    assert f"docker config, plaintext ({config}; Apptainer reads it too)" in row, listed
    [entry] = json.loads(assert_ok(headless.credbridge("list", "--json", env=headless.unlocked)))
    assert entry["store"].startswith("docker config, plaintext"), entry


# -- the cryptfile, from setup to doctor ----------------------------------------------------------


def test_setup_says_the_cryptfile_must_be_created_then_unlocked(headless: Headless) -> None:
    first = assert_ok(headless.credbridge("setup", "--tool", "docker"))
    assert "does not exist yet: run `credbridge unlock --new`" in first, first
    assert_ok(headless.credbridge("unlock", "--new", stdin=PASSPHRASE + "\n"))
    assert "new logins go to" not in assert_ok(headless.credbridge("setup", "--tool", "docker", "--dry-run"))
    assert_ok(headless.credbridge("lock"))
    locked = assert_ok(headless.credbridge("setup", "--tool", "docker", "--dry-run"))
    assert "credentials.cbf is locked: run `credbridge unlock`" in locked, locked


def test_doctor_on_a_working_headless_setup_is_clean_and_names_where_the_login_is(headless: Headless) -> None:
    assert_ok(headless.credbridge("setup"))
    assert_ok(headless.credbridge("unlock", "--new", stdin=PASSPHRASE + "\n"))
    assert_ok(
        headless.credbridge(
            "login", "--no-verify", "--password-stdin", "-u", "bob", "login.example.org", stdin="login-secret"
        )
    )
    for spelling in (["login.example.org"], ["--registry", "login.example.org"]):
        report = assert_ok(headless.credbridge("doctor", *spelling))
        assert "login.example.org: a login is kept in cryptfile" in report, report
        assert report.endswith("all good\n"), report
        assert "login-secret" not in report
    elsewhere = assert_ok(headless.credbridge("doctor", "quay.io"))
    assert "quay.io: no login in any store the router reads" in elsewhere, elsewhere


def test_doctor_names_a_locked_or_missing_cryptfile_once_with_the_command(headless: Headless) -> None:
    assert_ok(headless.credbridge("setup"))
    missing = headless.credbridge("doctor").text
    assert [line for line in missing.splitlines() if "unlock" in line] == ["    fix: credbridge unlock --new"], missing
    assert_ok(headless.credbridge("unlock", "--new", stdin=PASSPHRASE + "\n"))
    assert_ok(headless.credbridge("lock"))
    locked = headless.credbridge("doctor").text
    assert [line for line in locked.splitlines() if "unlock" in line] == ["    fix: credbridge unlock"], locked
    assert "credentials.cbf is locked" in locked


# -- a locked store never blocks a pull ------------------------------------------------------------


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry without authentication on loopback, holding test/hello:latest: a public image."""
    registry = start_registry(tmp_path_factory.mktemp("open-registry"), authenticated=False)
    try:
        registry.push_test_image()
        yield registry
    finally:
        registry.stop()


def pulls(headless: Headless, registry: Registry, tmp_path: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """skopeo and podman fetching the public image through what `credbridge setup` configured."""
    env = {**headless.env, **private_podman(tmp_path / "podman")}
    image = f"docker://{registry.test_image}"
    return {
        "skopeo": run_tool([program("skopeo", env), "inspect", "--tls-verify=false", image], env),
        "podman": run_tool([program("podman", env), "pull", "--tls-verify=false", image], env),
    }


def test_a_public_image_pulls_before_the_first_unlock_and_after_lock(
    headless: Headless, open_registry: Registry, tmp_path: Path
) -> None:
    assert "credbridge unlock --new" in assert_ok(headless.credbridge("setup"))
    for tool, done in pulls(headless, open_registry, tmp_path / "before").items():
        assert done.returncode == 0, f"{tool} with no cryptfile yet: {explain(done)}"
    assert_ok(headless.credbridge("unlock", "--new", stdin=PASSPHRASE + "\n"))
    assert_ok(
        headless.credbridge(
            "login", "--no-verify", "--password-stdin", "-u", "bob", "private.example.org", stdin="login-secret"
        )
    )
    assert_ok(headless.credbridge("lock"))
    for tool, done in pulls(headless, open_registry, tmp_path / "after").items():
        assert done.returncode == 0, f"{tool} after credbridge lock: {explain(done)}"
    held = headless.helper("credbridge").get("private.example.org")
    assert held.returncode == 1 and b"credbridge unlock" in held.stdout, held
