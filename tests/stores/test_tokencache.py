"""Token-minting helpers behind the router: the agent keeps their answers in memory, by expiry.

The helper is a real program (tests/support/jwtmint.py, installed as
docker-credential-jwtmint) that mints JWTs with a real `exp` and writes down
every call; the router reaches it through a route shaped like ECR's, served
by a real `credbridge agent`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import Installation, agent_serving
from tests.support.process import Result, run

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ROUTE = '"*.dkr.ecr.*.amazonaws.com"'
JWTMINT = Path(__file__).resolve().parents[1] / "support" / "jwtmint.py"


@dataclass(frozen=True)
class Minting:
    """The router's environment, the helper's state directory and what it was asked."""

    installation: Installation
    env: dict[str, str]
    state: Path

    @property
    def config(self) -> Path:
        return Path(self.env["XDG_CONFIG_HOME"]) / "credbridge" / "config.yaml"

    def get(self, registry: str = REGISTRY, **variables: str) -> Result:
        return self.router("get", stdin=registry, **variables)

    def router(self, *args: str, stdin: str = "", **variables: str) -> Result:
        program = self.installation.executable("docker-credential-credbridge")
        return run([program, *args], stdin, {**self.env, **variables})

    def credbridge(self, *args: str) -> Result:
        return run([self.installation.executable("credbridge"), *args], env=self.env)

    def calls(self, action: str = "get") -> list[str]:
        path = self.state / "calls"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.split()[0] == action]

    def set(self, name: str, value: str) -> None:
        (self.state / name).write_text(value)

    def unset(self, name: str) -> None:
        (self.state / name).unlink()

    def configure(self, route: str) -> None:
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"primary: cryptfile\nroutes:\n  {ROUTE}: {route}\n")
        self.config.chmod(0o600)


def minting_env(installation: Installation, tmp_path: Path) -> tuple[dict[str, str], Path]:
    home, runtime, state, bindir = (tmp_path / name for name in ("home", "run", "mint", "bin"))
    for directory in (home, runtime, state, bindir):
        directory.mkdir(mode=0o700)
    wrapper = bindir / "docker-credential-jwtmint"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {JWTMINT} {state} "$@"\n')
    wrapper.chmod(0o755)
    env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": f"{installation.bindir}:{bindir}:/usr/bin:/bin",
    }
    return env, state


@pytest.fixture
def minting(installation: Installation, tmp_path: Path) -> Iterator[Minting]:
    """jwtmint routed for ECR-shaped registries, reading AWS_PROFILE, behind an agent of its own."""
    env, state = minting_env(installation, tmp_path)
    served = Minting(installation, env, state)
    served.configure("{store: jwtmint, env: [AWS_PROFILE], timeout: 3}")
    with agent_serving(installation, env):
        yield served


def claims(result: Result) -> dict:
    assert (result.returncode, result.stderr) == (0, b""), result.text
    token = json.loads(result.stdout)["Secret"]
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_first_get_asks_the_helper_and_the_next_ones_are_answered_from_memory(minting: Minting) -> None:
    first = claims(minting.get())
    again = [claims(minting.get()) for _ in range(5)]
    assert again == [first] * 5
    assert len(minting.calls()) == 1


def test_another_spelling_of_the_registry_is_the_same_cached_answer(minting: Minting) -> None:
    first = claims(minting.get())
    assert claims(minting.get(f"https://{REGISTRY}/")) == first
    spelled = f"https://{REGISTRY}/"
    assert json.loads(minting.get(spelled).stdout)["ServerURL"] == spelled
    assert len(minting.calls()) == 1


def test_served_in_process_every_get_asks_the_helper(minting: Minting) -> None:
    numbers = [claims(minting.get(CREDBRIDGE_NO_AGENT="1"))["n"] for _ in range(3)]
    assert numbers == [1, 2, 3]


def test_a_token_is_refreshed_before_it_expires_and_no_get_waits_for_it(minting: Minting) -> None:
    """16 s of life: served until 14.4 s, refreshed from 10.8 s; the refresh takes 2 s."""
    minting.set("lifetime", "16")
    started = time.monotonic()
    first = claims(minting.get())
    minting.set("delay", "2")
    time.sleep(max(0.0, started + 11.3 - time.monotonic()))
    during_refresh = claims(minting.get())
    assert during_refresh == first, "a get waited for the refresh"
    deadline = time.monotonic() + 10
    while (fresh := claims(minting.get())) == first:
        assert time.monotonic() < deadline, "the token was not refreshed"
        time.sleep(0.2)
    assert (fresh["n"], fresh["exp"] > first["exp"]) == (2, True)
    assert len(minting.calls()) == 2


def test_a_token_is_not_served_after_its_safety_margin(minting: Minting) -> None:
    """Life 3 s: served until 2.7 s; no get in the refresh window, so the next one asks again."""
    minting.set("lifetime", "3")
    first = claims(minting.get())
    time.sleep(3)
    assert claims(minting.get())["n"] == first["n"] + 1


def test_an_ecr_tokens_own_expiration_says_how_long_it_is_served(minting: Minting) -> None:
    """ECR's token is base64 of a JSON document whose `expiration` is its end: 3 s here, on a route with
    no `ttl` (60 s when a token says nothing), so the get after 3 s asks the helper again."""
    minting.set("shape", "ecr")
    minting.set("lifetime", "3")
    first = minting.get()
    assert json.loads(first.stdout)["Username"] == "AWS", first.text
    time.sleep(3)
    second = minting.get()
    assert (second.returncode, len(minting.calls())) == (0, 2), second.text
    assert second.stdout != first.stdout


def test_two_profiles_get_two_tokens_and_keep_them(minting: Minting) -> None:
    profiles = ("dev", "prod", "dev", "prod")
    answers = [claims(minting.get(AWS_PROFILE=profile)) for profile in profiles]
    assert [answer["sub"] for answer in answers] == ["dev", "prod", "dev", "prod"]
    assert answers[0] != answers[1] and answers[0] == answers[2] and answers[1] == answers[3]
    assert minting.calls() == ["get dev", "get prod"]


def test_a_helper_the_route_does_not_give_a_variable_never_sees_it(minting: Minting) -> None:
    minting.configure("jwtmint")
    assert claims(minting.get(AWS_PROFILE="dev"))["sub"] == "default"


def test_a_hung_helper_ends_at_the_deadline_with_one_line_and_is_left_alone_a_while(minting: Minting) -> None:
    minting.set("delay", "60")
    line = (
        "docker-credential-jwtmint get did not answer within 3 seconds (raise `timeout` of the "
        f"route *.dkr.ecr.*.amazonaws.com in {minting.config}) (not asked again for 10 s)\n"
    )
    hung = minting.get()
    assert (hung.returncode, hung.text, hung.stderr) == (1, line, b"")
    minting.unset("delay")
    assert (minting.get().text, len(minting.calls())) == (line, 1)


def test_a_hung_helper_on_a_route_without_timeout_is_named_before_the_agent_gives_the_call_up(
    installation: Installation, tmp_path: Path
) -> None:
    """The agent answers a call it has waited too long for with a generic line; a helper it runs must
    end before that, so that the person hears which helper hung (here the agent's limit is lowered)."""
    env, state = minting_env(installation, tmp_path)
    served = Minting(installation, env, state)
    served.configure("jwtmint")
    served.set("delay", "60")
    with agent_serving(installation, {**env, "CREDBRIDGE_AGENT_CALL_SECONDS": "5"}):
        hung = served.get()
    assert (hung.returncode, hung.stderr) == (1, b""), hung.text
    assert re.fullmatch(
        r"docker-credential-jwtmint get did not answer within 4\.[0-5] seconds \(the agent waits no longer for a "
        r"helper; CREDBRIDGE_NO_AGENT=1 runs it in process, without that limit\) \(not asked again for 10 s\)\n",
        hung.text,
    ), hung.text


def test_a_failing_helper_is_one_line_naming_it(minting: Minting) -> None:
    minting.set("fail", "no AWS credentials in the environment")
    failed = minting.get()
    assert (failed.returncode, failed.text) == (
        1,
        "docker-credential-jwtmint get failed: no AWS credentials in the environment (not asked again for 10 s)\n",
    )
    assert (minting.get().text, len(minting.calls())) == (failed.text, 1)


def test_not_found_is_kept_briefly(minting: Minting) -> None:
    minting.set("absent", REGISTRY)
    answers = [minting.get() for _ in range(3)]
    not_found = (1, "credentials not found in native keychain\n")
    assert {(answer.returncode, answer.text) for answer in answers} == {not_found}
    assert len(minting.calls()) == 1


def test_lock_forgets_every_token(minting: Minting) -> None:
    first = claims(minting.get())
    locked = minting.credbridge("lock")
    assert locked.returncode == 0, locked.text
    assert claims(minting.get())["n"] == first["n"] + 1


def test_erase_forgets_the_registrys_token_and_succeeds(minting: Minting) -> None:
    """docker logout: the helper keeps nothing to erase ("not implemented"); the agent forgets."""
    first = claims(minting.get())
    erased = minting.router("erase", stdin=REGISTRY)
    assert (erased.returncode, erased.stdout, erased.stderr) == (0, b"", b"")
    assert claims(minting.get())["n"] == first["n"] + 1


def test_credbridge_logout_makes_the_agent_forget_the_token(minting: Minting) -> None:
    """The command serves itself (its own get asks the helper once); the agent then forgets."""
    assert claims(minting.get())["n"] == 1
    logout = minting.credbridge("logout", REGISTRY)
    assert logout.returncode == 0, logout.text
    assert claims(minting.get())["n"] == 3


def test_a_login_to_a_registry_whose_helper_mints_them_is_one_line_saying_none_is_needed(minting: Minting) -> None:
    login = json.dumps({"ServerURL": REGISTRY, "Username": "AWS", "Secret": "x"})
    stored = minting.router("store", stdin=login)
    assert (stored.returncode, stored.text) == (
        1,
        f"{REGISTRY} gets its logins from docker-credential-jwtmint (the route "
        f"*.dkr.ecr.*.amazonaws.com in {minting.config}), which makes one at each pull: "
        "no login is needed, pull and push as you are\n",
    )


@pytest.mark.parametrize(
    "registry",
    [
        "x.dkr.ecr.evil.com",
        "evil.com#.dkr.ecr.us-east-1.amazonaws.com",
        "dkr.ecr.us-east-1.amazonaws.com",
        f"{REGISTRY}.evil.com",
        "1.dkr.ecr.us.east-1.amazonaws.com",
        "1.dkr.ecr..amazonaws.com",
    ],
)
def test_the_ecr_pattern_is_anchored_and_its_inner_star_is_one_label(minting: Minting, registry: str) -> None:
    assert minting.get(registry).returncode == 1
    assert minting.calls() == []
    claims(minting.get())
    assert len(minting.calls()) == 1


def test_config_shows_the_routes_settings(minting: Minting) -> None:
    minting.configure("{store: jwtmint, env: [AWS_PROFILE], timeout: 3, ttl: 900}")
    shown = minting.credbridge("config")
    assert (
        "routes:      *.dkr.ecr.*.amazonaws.com -> jwtmint (ttl 900 s, timeout 3 s, env AWS_PROFILE)\n"
    ) in shown.text
    as_json = json.loads(minting.credbridge("config", "--json").stdout)
    assert as_json["routes"] == [
        {"pattern": "*.dkr.ecr.*.amazonaws.com", "store": "jwtmint", "ttl": 900, "timeout": 3, "env": ["AWS_PROFILE"]}
    ]


def test_a_route_setting_credbridge_does_not_know_is_one_line(minting: Minting) -> None:
    minting.configure("{store: jwtmint, lifetime: 3}")
    answer = minting.get()
    assert (answer.returncode, answer.text) == (
        1,
        f"`routes.*.dkr.ecr.*.amazonaws.com` in {minting.config} has "
        "lifetime, which credbridge does not know: a route takes store, ttl, timeout and env\n",
    )


def test_a_route_env_naming_a_variable_credbridge_never_receives_is_one_line(minting: Minting) -> None:
    minting.configure("{store: jwtmint, env: [AWS_PROFILE, MY_TOKEN]}")
    answer = minting.get()
    assert (answer.returncode, answer.text) == (
        1,
        f"`routes.*.dkr.ecr.*.amazonaws.com.env` in {minting.config} names 'MY_TOKEN', which "
        "helpers do not pass on to credbridge: name variables beginning AWS_, GOOGLE_, "
        "CLOUDSDK_, AZURE_ or CREDBRIDGE_, or a proxy variable\n",
    )


def test_doctor_says_each_routed_helper_answers(minting: Minting) -> None:
    answers = "✔ helper: docker-credential-jwtmint answers (route *.dkr.ecr.*.amazonaws.com)"
    assert answers in minting.credbridge("doctor").text
    minting.configure("ecr-nowhere")
    doctor = minting.credbridge("doctor")
    missing = "✘ helper: docker-credential-ecr-nowhere (route *.dkr.ecr.*.amazonaws.com) is not on PATH"
    assert missing in doctor.text
    assert doctor.returncode == 1


def test_doctor_names_a_routed_helper_that_hangs(minting: Minting) -> None:
    minting.set("delay", "60")
    doctor = minting.credbridge("doctor")
    hung = "✘ helper: docker-credential-jwtmint list did not answer within 3 seconds"
    assert hung in doctor.text, doctor.text
