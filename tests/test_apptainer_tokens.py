"""Endpoint tokens and keyserver logins of Apptainer and SingularityCE: out of remote.yaml, into a store.

`remote login` and `keyserver login` leave them in plaintext in remote.yaml
(both programs, both yaml eras). `credbridge migrate` moves them into a
store under keys that say what they are for, reads each back, and only
then rewrites remote.yaml without them, loadable by the programs' strict
decoders. No docker registry of the same host is ever offered them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Helper, Installation
from tests.support.matrix import NOT_FOUND
from tests.support.process import Result, run
from tests.support.strictload import StrictLoader

DATA = Path(__file__).resolve().parent / "data" / "apptainer"
#: key in the store -> (username, secret), as the era files hold them.
HELD = {
    "apptainer-endpoint:cloud.sylabs.io": ("<token>", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"),
    "apptainer-endpoint:library.example.org": ("<token>", "lib-token: with colon #and hash"),
    "apptainer-keyserver:https://keys.example.org": ("alice", "s3cr3t"),
    "apptainer-keyserver:https://keys.sylabs.io": ("<token>", "eyJhbGciOiJIUzI1NiJ9.e30.Zm9v"),
}
#: key -> how its secret is spelled in remote.yaml (a Basic keyserver login is base64 in its Authorization header).
IN_FILE = {key: secret for key, (_username, secret) in HELD.items()} | \
    {"apptainer-keyserver:https://keys.example.org": "YWxpY2U6czNjcjN0"}
SAME_HOSTS = ["cloud.sylabs.io", "https://cloud.sylabs.io", "library.example.org", "https://library.example.org/",
              "keys.example.org", "https://keys.example.org", "keys.sylabs.io", "https://keys.sylabs.io"]


class TokenHome:
    """A login session whose ~/.apptainer (yaml.v3 era) and ~/.singularity (yaml.v2 era) hold tokens."""

    def __init__(self, installation: Installation, env: dict[str, str]) -> None:
        self.installation = installation
        self.env = env
        home = Path(env["HOME"])
        self.remote_yamls = {"apptainer": home / ".apptainer" / "remote.yaml",
                             "singularityce": home / ".singularity" / "remote.yaml"}
        for (flavour, path), era in zip(self.remote_yamls.items(), ("remote-v3-era.yaml", "remote-v2-era.yaml")):
            path.parent.mkdir(mode=0o700)
            shutil.copyfile(DATA / era, path)
            path.chmod(0o600)

    def credbridge(self, *args: str) -> Result:
        return run([self.installation.executable("credbridge"), *args], "", self.env)

    def helper(self, store: str) -> Helper:
        return Helper(self.installation.executable(f"docker-credential-{store}"), self.env)

    def plaintext_left(self) -> dict[str, list[str]]:
        """Every remote.yaml (and backup) of both programs' directories still holding a secret."""
        found = {}
        for directory in {path.parent for path in self.remote_yamls.values()}:
            for path in directory.iterdir():
                text = path.read_text(errors="replace")
                found.update({str(path): [key for key, secret in IN_FILE.items() if secret in text]})
        return {path: secrets for path, secrets in found.items() if secrets}

    def snapshot(self) -> dict[str, bytes]:
        return {flavour: path.read_bytes() for flavour, path in self.remote_yamls.items()}


@pytest.fixture
def token_home(installation: Installation, tmp_path: Path) -> TokenHome:
    """Its own HOME and runtime dir; the cryptfile opens with a passphrase file and is the router's primary,
    every helper call is served in process, so nothing outlives the test."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    for directory in (home, runtime):
        directory.mkdir(mode=0o700)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("token passphrase\n")
    passphrase.chmod(0o600)
    config = home / ".config" / "credbridge" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("primary: cryptfile\n")
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "PATH": f"{installation.bindir}:{os.environ['PATH']}",
           "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase), "CREDBRIDGE_NO_AGENT": "1"}
    return TokenHome(installation, env)


def migrated(home: TokenHome) -> Result:
    done = home.credbridge("migrate", "--to", "cryptfile")
    assert done.returncode == 0, done.text + done.stderr.decode()
    return done


# -- migrate ---------------------------------------------------------------------------------

def test_tokens_and_keyserver_logins_move_into_the_store_and_leave_no_plaintext(
        token_home: TokenHome, strict_loader: StrictLoader) -> None:
    before = {flavour: strict_loader.remote_yaml(path, flavour) for flavour, path in token_home.remote_yamls.items()}
    assert token_home.plaintext_left()
    migrated(token_home)
    cryptfile = token_home.helper("cryptfile")
    for key, (username, secret) in HELD.items():
        assert json.loads(cryptfile.get(key).stdout) == {"ServerURL": key, "Username": username, "Secret": secret}
    assert token_home.plaintext_left() == {}
    for flavour, path in token_home.remote_yamls.items():
        after = strict_loader.remote_yaml(path, flavour)
        assert path.stat().st_mode & 0o777 == 0o600
        assert after["Active"] == before[flavour]["Active"]
        for name, remote in before[flavour]["Remotes"].items():  # every endpoint stays, its token emptied
            assert after["Remotes"][name] == {**remote, "Token": ""}
        assert after["Credentials"] == [{**entry, "Auth": ""} for entry in before[flavour]["Credentials"]]


def test_a_registry_of_the_same_host_is_never_offered_a_token(token_home: TokenHome) -> None:
    migrated(token_home)
    for store in ("cryptfile", "credbridge"):
        for query in SAME_HOSTS:
            assert token_home.helper(store).get(query).stdout == NOT_FOUND, (store, query)
    authfile = token_home.credbridge("exec", "--store", "cryptfile", "--", "sh", "-c", 'cat "$REGISTRY_AUTH_FILE"')
    assert authfile.returncode == 0, authfile.stderr
    assert json.loads(authfile.stdout) == {"auths": {}}


def test_a_second_run_and_a_dry_run_change_nothing(token_home: TokenHome) -> None:
    dry = token_home.credbridge("migrate", "--to", "cryptfile", "--dry-run")
    assert dry.returncode == 0 and token_home.plaintext_left()
    for key in HELD:
        assert f"would move {key} (Apptainer, {token_home.remote_yamls['apptainer']})" in dry.text
    assert token_home.helper("cryptfile").get("apptainer-endpoint:cloud.sylabs.io").stdout == NOT_FOUND
    migrated(token_home)
    before = token_home.snapshot()
    again = migrated(token_home)
    assert "nothing to move" in again.text
    assert token_home.snapshot() == before


def test_a_different_token_already_in_the_store_is_not_overwritten(token_home: TokenHome) -> None:
    """The two programs' files disagree: the second token stays in its file rather than replace the first."""
    singularity = token_home.remote_yamls["singularityce"]
    singularity.write_text(singularity.read_text().replace("lib-token: with colon #and hash", "an older lib-token"))
    done = migrated(token_home)
    assert f"kept apptainer-endpoint:library.example.org in {singularity}" in done.text
    assert "credbridge logout apptainer-endpoint:library.example.org" in done.text
    stored = json.loads(token_home.helper("cryptfile").get("apptainer-endpoint:library.example.org").stdout)
    assert stored["Secret"] == "lib-token: with colon #and hash"
    assert "an older lib-token" in singularity.read_text()


def test_kill_during_migrate_loses_no_token(token_home: TokenHome, strict_loader: StrictLoader) -> None:
    chance = random.Random(18)
    cryptfile = token_home.helper("cryptfile")
    for _attempt in range(4):
        process = subprocess.Popen([token_home.installation.executable("credbridge"), "migrate", "--to", "cryptfile"],
                                   env=token_home.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(chance.uniform(0.2, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        listed = cryptfile.list()
        in_store = json.loads(listed.stdout) if listed.returncode == 0 else {}  # no cryptfile before the first store
        for flavour, path in token_home.remote_yamls.items():
            text = path.read_text()
            strict_loader.remote_yaml(path, flavour)
            for key, secret in IN_FILE.items():
                assert secret in text or key in in_store, f"{key} is neither in {path} nor in the store"
    migrated(token_home)
    assert token_home.plaintext_left() == {}


# -- doctor and list ----------------------------------------------------------------------------

def test_doctor_counts_plaintext_tokens_and_names_migrate(token_home: TokenHome) -> None:
    before = token_home.credbridge("doctor").text
    for path in token_home.remote_yamls.values():
        assert f"4 endpoint token(s) or keyserver login(s) in plaintext in {path}" in before
    assert "credbridge migrate" in before
    migrated(token_home)
    assert "endpoint token(s)" not in token_home.credbridge("doctor").text


def test_list_shows_each_token_with_its_kind(token_home: TokenHome) -> None:
    migrated(token_home)
    listed = json.loads(token_home.credbridge("list", "--json").stdout)
    kinds = {row["registry"]: row["kind"] for row in listed if row["registry"] in HELD}
    assert kinds == {key: "endpoint token" if "endpoint" in key else "keyserver login" for key in HELD}
    assert "apptainer-endpoint:cloud.sylabs.io" in token_home.credbridge("list").text
