"""Debian's docker-credential-ecr-login behind the router, minting tokens from moto on loopback.

tests/support/aws.py counts every GetAuthorizationToken that reaches the
emulated AWS, per profile: the count is what a build costs the cloud.
"""

from __future__ import annotations

import base64
import json
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.conftest import Installation, agent_serving
from tests.support.aws import ACCOUNT, PROFILES, EcrEmulation, ecr
from tests.support.process import Result, run

__all__ = ["ecr"]


class RoutedEcr:
    """The router in front of ecr-login: an agent of its own, a config routing ECR's hosts."""

    def __init__(self, installation: Installation, emulation: EcrEmulation, tmp_path: Path) -> None:
        self.installation, self.emulation = installation, emulation
        runtime, config_home = tmp_path / "run", tmp_path / "config"
        runtime.mkdir(mode=0o700)
        config = config_home / "credbridge" / "config.yaml"
        config.parent.mkdir(parents=True, mode=0o700)
        config.write_text('primary: cryptfile\nroutes:\n  "*.dkr.ecr.*.amazonaws.com": {store: ecr-login, ttl: 8}\n')
        self.config, self.agent_place = config, runtime / "credbridge"
        self.extra = {
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(config_home),
            "PATH": f"{installation.bindir}:/usr/bin:/bin",
        }

    def env(self, profile: str = PROFILES[0], **variables: str) -> dict[str, str]:
        return {**self.emulation.env(profile), **self.extra, **variables}

    def get(self, profile: str = PROFILES[0], **variables: str) -> str:
        result = self.router("get", self.emulation.registry, self.env(profile, **variables))
        assert (result.returncode, result.stderr) == (0, b""), result.text
        answer = json.loads(result.stdout)
        assert answer["Username"] == "AWS"
        return answer["Secret"]

    def router(self, action: str, stdin: str, env: Optional[dict[str, str]] = None) -> Result:
        program = self.installation.executable("docker-credential-credbridge")
        return run([program, action], stdin, env or self.env())

    def credbridge(self, *args: str) -> Result:
        return run([self.installation.executable("credbridge"), *args], env=self.env())


def files_holding(directory: Path, token: str) -> list[Path]:
    """Files under `directory` holding `token` as it is or as ecr-login's cache.json keeps it (base64)."""
    marks = (token.encode(), base64.b64encode(f"AWS:{token}".encode()))
    files = [path for path in directory.rglob("*") if path.is_file() and not path.is_symlink()]
    return [path for path in files if any(mark in path.read_bytes() for mark in marks)]


@pytest.fixture
def routed(installation: Installation, ecr: EcrEmulation, tmp_path: Path) -> Iterator[RoutedEcr]:
    served = RoutedEcr(installation, ecr, tmp_path)
    with agent_serving(installation, served.env()):
        yield served


def test_through_the_agent_ecr_logins_token_file_is_in_the_agents_private_directory_and_list_still_answers(
    routed: RoutedEcr,
) -> None:
    """ecr-login writes each token to its cache.json in plaintext, and answers `list` from it: called by
    the agent it keeps that file in a 0700 directory of the agent's (tmpfs), not in ~/.ecr."""
    token = routed.get()
    through_agent = routed.router("list", "")
    assert not files_holding(routed.emulation.home, token)
    [held] = files_holding(routed.agent_place, token)
    assert (held.name, stat.S_IMODE(held.parent.stat().st_mode)) == ("cache.json", 0o700)
    in_process = routed.router("list", "", routed.env(CREDBRIDGE_NO_AGENT="1"))
    assert (through_agent.returncode, through_agent.stderr) == (0, b""), through_agent.text
    assert f"https://{routed.emulation.registry}" in json.loads(through_agent.stdout)
    assert json.loads(through_agent.stdout) == json.loads(in_process.stdout)


def test_lock_and_the_agents_exit_remove_ecr_logins_token_file(
    installation: Installation, ecr: EcrEmulation, tmp_path: Path
) -> None:
    """`credbridge lock` drops the agent's tokens and ecr-login's file with them; so does the agent's
    exit on SIGTERM (agent_serving stops it so)."""
    served = RoutedEcr(installation, ecr, tmp_path)
    with agent_serving(installation, served.env()):
        token = served.get()
        [held] = files_holding(served.agent_place, token)
        locked = served.credbridge("lock")
        assert locked.returncode == 0, locked.text
        assert not held.parent.exists()
        assert served.get() == token
        assert files_holding(served.agent_place, token)
    assert not files_holding(served.agent_place, token)
    assert [path.name for path in served.agent_place.iterdir() if path.is_dir()] == []
    assert not files_holding(ecr.home, token)


@pytest.mark.parametrize("choice", ["AWS_ECR_CACHE_DIR", "AWS_ECR_DISABLE_CACHE"])
def test_a_callers_own_choice_of_ecr_logins_cache_stands(routed: RoutedEcr, tmp_path: Path, choice: str) -> None:
    """The caller's AWS_ECR_CACHE_DIR (or AWS_ECR_DISABLE_CACHE) reaches ecr-login as they set it."""
    chosen = tmp_path / "chosen"
    token = routed.get(**{choice: str(chosen) if choice == "AWS_ECR_CACHE_DIR" else "1"})
    expected = [chosen / "cache.json"] if choice == "AWS_ECR_CACHE_DIR" else []
    assert files_holding(tmp_path, token) == expected


def test_the_first_get_calls_aws_and_the_next_ones_do_not(routed: RoutedEcr) -> None:
    secrets = [routed.get() for _ in range(10)]
    assert secrets == [f"{ACCOUNT}-auth-token"] * 10
    assert routed.emulation.token_calls() == 1


def test_called_directly_or_in_process_every_get_calls_aws(routed: RoutedEcr) -> None:
    for _ in range(3):
        routed.get(CREDBRIDGE_NO_AGENT="1")
    assert routed.emulation.token_calls() == 3


def test_two_profiles_get_a_token_each_and_keep_it(routed: RoutedEcr) -> None:
    for profile in [*PROFILES, *PROFILES, *PROFILES]:
        routed.get(profile)
    assert [routed.emulation.token_calls(profile) for profile in PROFILES] == [1, 1]


def test_the_token_is_refreshed_in_the_background_before_the_routes_ttl_runs_out(routed: RoutedEcr) -> None:
    """ttl 8 s: served until 7.2 s, refreshed from 5.4 s by the first get after that."""
    started = time.monotonic()
    routed.get()
    time.sleep(max(0.0, started + 5.8 - time.monotonic()))
    routed.get()
    deadline = time.monotonic() + 10
    while routed.emulation.token_calls() < 2:
        assert time.monotonic() < deadline, "no refresh reached AWS"
        time.sleep(0.1)
    routed.get()
    assert routed.emulation.token_calls() == 2


def test_docker_login_to_an_ecr_registry_says_ecr_login_makes_its_logins(routed: RoutedEcr) -> None:
    registry = routed.emulation.registry
    login = json.dumps({"ServerURL": registry, "Username": "AWS", "Secret": "x"})
    stored = routed.router("store", login)
    assert (stored.returncode, stored.text) == (
        1,
        f"{registry} gets its logins from docker-credential-ecr-login (the route "
        f"*.dkr.ecr.*.amazonaws.com in {routed.config}), which makes one at each pull: "
        "no login is needed, pull and push as you are\n",
    )
    erased = routed.router("erase", registry)
    assert (erased.returncode, erased.stdout) == (0, b"")


def test_doctor_says_ecr_login_answers_and_leaves_no_token_file(routed: RoutedEcr, tmp_path: Path) -> None:
    """doctor's check of the helper and its login survey call ecr-login's `list`, which mints a token and
    writes it to its file: in a directory beside the agent's socket, removed after the checks."""
    doctor = routed.credbridge("doctor")
    answers = "✔ helper: docker-credential-ecr-login answers (route *.dkr.ecr.*.amazonaws.com)"
    assert answers in doctor.text, doctor.text
    assert routed.emulation.token_calls() >= 1
    assert not files_holding(tmp_path, f"{ACCOUNT}-auth-token")


@pytest.mark.parametrize("command", [["list"], ["logout", "REGISTRY"]], ids=["list", "logout"])
def test_credbridges_own_list_and_logout_leave_no_token_file(
    routed: RoutedEcr, tmp_path: Path, command: list[str]
) -> None:
    """`credbridge list` and `logout` ask ecr-login themselves (its `list`, or a `get` to see whether there
    is a login): what it mints goes to a directory beside the agent's socket, removed at the end, as
    doctor's and the agent's calls do; never to ~/.ecr."""
    done = routed.credbridge(*[routed.emulation.registry if word == "REGISTRY" else word for word in command])
    assert done.returncode == 0, done.text
    assert routed.emulation.token_calls() >= 1
    assert not files_holding(tmp_path, f"{ACCOUNT}-auth-token")
    assert not files_holding(routed.emulation.home, f"{ACCOUNT}-auth-token")


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_credbridge_list_ended_by_a_signal_leaves_no_token_file(
    routed: RoutedEcr, tmp_path: Path, signal_number: int
) -> None:
    """A job killed, or its terminal closed, while `credbridge list` waits for ecr-login: ecr-login is
    stopped and its directory removed, as on Ctrl-C; left running, it would write the token there."""
    routed.emulation.proxy.upstream_delay = 2.0
    listing = subprocess.Popen(
        [routed.installation.executable("credbridge"), "list"],
        env=routed.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not list(routed.agent_place.glob("helper-files-*/ecr-login")):
        assert listing.poll() is None and time.monotonic() < deadline, "ecr-login was not started"
        time.sleep(0.05)
    listing.send_signal(signal_number)
    listing.communicate(timeout=10)
    time.sleep(4)  # an ecr-login left running has had its answer from AWS by now
    assert not files_holding(tmp_path, f"{ACCOUNT}-auth-token")
    assert list(routed.agent_place.glob("helper-files-*")) == []


def test_the_audit_record_names_ecr_login_as_the_store_that_answered(routed: RoutedEcr, tmp_path: Path) -> None:
    """When a token leaks, which store held it: the helper behind the router, not the router."""
    state = tmp_path / "state"
    routed.get(XDG_STATE_HOME=str(state))
    [record] = [json.loads(line) for line in (state / "credbridge" / "audit.log").read_text().splitlines()]
    assert (record["action"], record["registry"], record["store"], record["outcome"]) == (
        "get",
        routed.emulation.registry,
        "credbridge>ecr-login",
        "found",
    ), record
