"""The ECR emulation other tests build on: the real ecr-login mints tokens from moto on loopback.

What these pin down (see tests/support/aws.py): ecr-login answers `get` with Username AWS;
every GetAuthorizationToken moto receives is counted per profile; moto's token depends on the
registry asked for, not on the caller, and carries no expiry (expiresAt is fixed in 2015).
"""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.aws import ACCOUNT, PROFILES, REGION, EcrEmulation, ecr, registry_host, start_ecr_emulation
from tests.support.process import run

__all__ = ["ecr"]


def ecr_login(emulation: EcrEmulation, action: str, stdin: str = "", profile: str = PROFILES[0]) -> dict:
    result = run(["docker-credential-ecr-login", action], stdin, emulation.env(profile))
    assert result.returncode == 0, (result.text, result.stderr.decode(errors="replace"))
    return json.loads(result.stdout)


def test_get_answers_the_registry_with_a_token_from_the_emulation(ecr: EcrEmulation) -> None:
    answer = ecr_login(ecr, "get", ecr.registry)
    assert answer == {"ServerURL": ecr.registry, "Username": "AWS", "Secret": f"{ACCOUNT}-auth-token"}
    assert ecr.token_calls() == 1


def test_each_get_is_one_counted_call_signed_by_the_callers_profile(ecr: EcrEmulation) -> None:
    """ecr-login's own file cache never serves moto's tokens: they expired in 2015."""
    for _ in range(3):
        ecr_login(ecr, "get", ecr.registry, PROFILES[0])
    ecr_login(ecr, "get", ecr.registry, PROFILES[1])
    assert (ecr.token_calls(PROFILES[0]), ecr.token_calls(PROFILES[1])) == (3, 1)
    assert ecr.token_calls() == 4


def test_moto_tokens_differ_by_registry_not_by_profile(ecr: EcrEmulation) -> None:
    """Two profiles asking for one registry get the same secret: moto mints '<id>-auth-token'."""
    other = registry_host("210987654321")
    secrets = {
        (profile, host): ecr_login(ecr, "get", host, profile)["Secret"]
        for profile in PROFILES
        for host in (ecr.registry, other)
    }
    assert secrets[PROFILES[0], ecr.registry] == secrets[PROFILES[1], ecr.registry]
    assert secrets[PROFILES[0], ecr.registry] != secrets[PROFILES[0], other]
    assert ecr.token_calls() == 4


def test_the_token_carries_no_expiry_and_moto_says_it_expired_in_2015(ecr: EcrEmulation) -> None:
    """A cache must take its lifetime from a route's ttl here: nothing in the token says one."""
    password = ecr_login(ecr, "get", ecr.registry)["Secret"]
    assert password == f"{ACCOUNT}-auth-token"
    cache = json.loads((ecr.home / ".ecr" / "cache.json").read_text())
    entry = next(iter(cache["Registries"].values()))
    assert base64.b64decode(entry["AuthorizationToken"]) == f"AWS:{password}".encode()
    assert entry["ExpiresAt"] == "2015-01-01T00:00:00Z"


def test_nothing_but_the_emulated_endpoint_is_reachable(ecr: EcrEmulation) -> None:
    """Another region's endpoint is refused by the proxy: ecr-login fails, nothing is counted."""
    result = run(["docker-credential-ecr-login", "get"], registry_host(region="eu-west-1"), ecr.env())
    assert result.returncode != 0
    assert ecr.token_calls() == 0


def test_plain_http_through_the_proxy_is_refused(ecr: EcrEmulation) -> None:
    """The instance metadata service (plain HTTP) is not reachable through HTTP_PROXY."""
    proxy = urlsplit(ecr.env()["HTTP_PROXY"])
    connection = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=10)
    try:
        connection.request("GET", "http://169.254.169.254/latest/meta-data/")
        assert connection.getresponse().status == 403
    finally:
        connection.close()
    assert ecr.token_calls() == 0


def test_with_a_real_token_lifetime_ecr_logins_plaintext_file_cache_serves_and_only_its_switch_stops_it(
    tmp_path: Path,
) -> None:
    """What bench/bench_tokencache.py compares against: tokens that live 12 h, as ECR's do, are served
    from ~/.ecr/cache.json (in plaintext) after one call; AWS_ECR_DISABLE_CACHE=1 makes every get a call
    and writes no token (ecr-login 0.6.0, ecr-login/cache/build.go)."""
    emulation = start_ecr_emulation(tmp_path / "ecr", token_lifetime=12 * 3600)
    try:
        for _ in range(3):
            ecr_login(emulation, "get", emulation.registry)
        assert emulation.token_calls() == 1
        cache = json.loads((emulation.home / ".ecr" / "cache.json").read_text())
        assert [entry["AuthorizationToken"] for entry in cache["Registries"].values()] == [
            base64.b64encode(f"AWS:{ACCOUNT}-auth-token".encode()).decode()
        ]
        (emulation.home / ".ecr" / "cache.json").unlink()
        uncached = {**emulation.env(), "AWS_ECR_DISABLE_CACHE": "1"}
        for _ in range(3):
            assert run(["docker-credential-ecr-login", "get"], emulation.registry, uncached).returncode == 0
        assert emulation.token_calls() == 4
        assert not (emulation.home / ".ecr" / "cache.json").exists()
    finally:
        emulation.stop()


def test_list_asks_ecr_public_once_and_takes_its_refusal(ecr: EcrEmulation) -> None:
    """ecr-login's `list` asks ECR Public after ECR; moto has none, and a refused connection was retried
    for seconds: the proxy answers as AWS does a caller without ECR Public access, and counts it."""
    assert ecr_login(ecr, "list") == {f"https://{ecr.registry}": "AWS"}
    assert (ecr.token_calls(), ecr.public_calls()) == (1, 1)
