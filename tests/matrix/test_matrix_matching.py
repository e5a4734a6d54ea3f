"""Every helper: a credential is never returned, nor erased, for a different registry.

Spellings of one registry (case, trailing dot or slash, scheme, Docker Hub
aliases) meet; lookalike hosts, other ports, userinfo, other IPv6
addresses, homoglyphs and other paths never do. When in doubt a helper
answers "not found": a failed pull is a nuisance, a password sent to the
wrong host is an incident.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Helper, Installation, across_installations
from tests.support.matrix import EVERY_HELPER, NOT_FOUND, build_helper, helper_id, stored

STORED = {
    "registry.example.com": "plain",
    "registry.example.com:5000": "port-5000",
    "https://[2001:db8::1]:5000": "ipv6",
    "xn--bcher-kva.example": "idna",
    "https://index.docker.io/v1/": "hub",
    "10.0.0.1:443": "ipv4",
}

SAME_REGISTRY = {
    "REGISTRY.EXAMPLE.COM": "plain",
    "registry.example.com.": "plain",
    "registry.example.com/": "plain",
    "https://Registry.Example.com/": "plain",
    "http://registry.example.com": "plain",
    "registry.example.com.:5000": "port-5000",
    "https://registry.example.com:5000/": "port-5000",
    "[2001:db8::1]:5000": "ipv6",
    "[2001:DB8::1]:5000/": "ipv6",
    "XN--BCHER-KVA.example": "idna",
    "docker.io": "hub",
    "registry-1.docker.io": "hub",
    "https://index.docker.io/v2/": "hub",
    "10.0.0.1:443": "ipv4",
}

DIFFERENT_REGISTRY = [
    "registry.example.com.evil.net",
    "evil-registry.example.com",
    "registry.example.co",
    "egistry.example.com",
    "registry.example.com:5001",
    "registry.example.com:500",
    "registry.example.com:50000",
    "registry.example.com:\uff15\uff10\uff10\uff10",  # full-width digits
    "user@registry.example.com",
    "user:pw@registry.example.com",
    "registry.example.com@evil.net",
    "registry.example.com\\@evil.net",
    "registry.example.com%2eevil.net",
    "registry.example.com?.evil.net",
    "registry.example.com#.evil.net",
    "registry.example.com/v2/other",
    "evil.net/registry.example.com",
    "registry.ex\u0430mple.com",  # Cyrillic a
    "regi\u0307stry.example.com",  # combining dot
    "[2001:db8::1]:5001",
    "[2001:db8::2]:5000",
    "[2001:db8::1]",
    "[2001:db8::1]:5000.evil.net",
    "2001:db8::1:5000",
    "[::ffff:10.0.0.1]:443",
    "10.0.0.1",
    "10.0.0.10:443",
    "10.0.0.1:4430",
    "xn--bcher-kva.example.evil.net",
    "xn--bcher-kvb.example",
    "docker.io.evil.net",
    "index.docker.io.evil.net",
    "evildocker.io",
    "docker.io:5000",
    "docker.io/library",
    "https://index.docker.io/v1/access-token",
    "hub.docker.com",
    "registry.example.com#",
    "registry.example.com?",
    "https://registry.example.com/#frag",
    "https://registry.example.com/?x",
    "registry.example.com:5000#",
    "https://index.docker.io/v1/?x",
    "docker.io#",
]

pytestmark = across_installations  # the venv install and the PyInstaller bundle alike


@pytest.fixture(params=EVERY_HELPER, ids=helper_id)
def helper(request: pytest.FixtureRequest, installation: Installation) -> Helper:
    helper = build_helper(request, *request.param)
    for server, secret in STORED.items():
        stored(helper, server, "user-" + secret, secret)
    return helper


def test_each_spelling_of_a_stored_registry_gets_that_registrys_credential(helper: Helper) -> None:
    wrong = {}
    for query, expected in SAME_REGISTRY.items():
        result = helper.get(query)
        answer = json.loads(result.stdout).get("Secret") if result.returncode == 0 else result.text
        if answer != expected:
            wrong[query] = answer
    assert wrong == {}, f"spellings answered wrongly (query: answer): {wrong}"


def test_no_lookalike_gets_any_credential(helper: Helper) -> None:
    leaked = {}
    for query in DIFFERENT_REGISTRY:
        result = helper.get(query)
        if (result.returncode, result.stdout) != (1, NOT_FOUND):
            leaked[query] = result.text
    assert leaked == {}, f"a different registry got an answer (query: answer): {leaked}"


def test_erasing_a_lookalike_erases_nothing(helper: Helper) -> None:
    for query in DIFFERENT_REGISTRY:
        result = helper.erase(query)
        assert (result.returncode, result.stderr) == (0, b""), (query, result)
    assert set(json.loads(helper.list().stdout)) == set(STORED)
