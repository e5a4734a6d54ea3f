"""docker-credential-credbridge: routes writes, reads in order, erases everywhere, never loops.

The router passes the whole store contract (tests/contract/test_store_contract.py);
these tests prove what only a router does, with the real stores behind it:
the private gnome-keyring, an unlocked cryptfile, Apptainer's files, and
Go's docker-credential-secretservice as an external helper.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests.conftest import GO_SECRETSERVICE, SERVING, Helper, Installation, router_env

SERVER = "registry.example.com"


@pytest.fixture(params=SERVING)
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Router env: fresh HOME, clean private keyring, fresh unlocked cryptfile, no config file yet."""
    return router_env(routed=False)(request, request.param)


def configured(env: dict[str, str], text: str) -> dict[str, str]:
    config = Path(env["HOME"]) / ".config" / "credbridge" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return env


def helper(installation: Installation, env: dict[str, str], name: str = "credbridge") -> Helper:
    return Helper(installation.executable(f"docker-credential-{name}"), env)


def secret_of(result_stdout: bytes) -> str:
    return json.loads(result_stdout)["Secret"]


def stored_ok(helper_: Helper, server: str, username: str, secret: str) -> None:
    result = helper_.store(server, username, secret)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result.text


def apptainer_login(env: dict[str, str], server: str, username: str, secret: str) -> None:
    """What `apptainer registry login` leaves: the secret in ~/.apptainer/docker-config.json."""
    directory = Path(env["HOME"]) / ".apptainer"
    directory.mkdir(mode=0o700, exist_ok=True)
    auth = base64.b64encode(f"{username}:{secret}".encode()).decode()
    (directory / "docker-config.json").write_text(json.dumps({"auths": {server: {"auth": auth}}}))


# -- writes ----------------------------------------------------------------------------------------


def test_without_a_config_writes_go_to_the_keyring_when_a_secret_service_runs(
    installation: Installation, env: dict[str, str]
) -> None:
    stored_ok(helper(installation, env), SERVER, "alice", "s3cret")
    assert secret_of(helper(installation, env, "keyring").get(SERVER).stdout) == "s3cret"
    assert helper(installation, env, "cryptfile").list().stdout == b"{}\n"


def test_without_a_session_bus_writes_go_to_the_encrypted_file(installation: Installation, env: dict[str, str]) -> None:
    headless = {name: value for name, value in env.items() if name != "DBUS_SESSION_BUS_ADDRESS"}
    stored_ok(helper(installation, headless), SERVER, "alice", "s3cret")
    assert secret_of(helper(installation, headless, "cryptfile").get(SERVER).stdout) == "s3cret"
    assert helper(installation, env, "keyring").list().stdout == b"{}\n"


def test_a_route_sends_its_registries_to_its_store_and_the_rest_to_the_primary(
    installation: Installation, env: dict[str, str]
) -> None:
    configured(env, 'primary: cryptfile\nroutes:\n  "*.corp.example": keyring\n')
    router = helper(installation, env)
    stored_ok(router, "registry.corp.example", "alice", "routed")
    stored_ok(router, "ghcr.io", "bob", "primary")
    assert json.loads(helper(installation, env, "keyring").list().stdout) == {"registry.corp.example": "alice"}
    assert json.loads(helper(installation, env, "cryptfile").list().stdout) == {"ghcr.io": "bob"}
    assert secret_of(router.get("https://registry.corp.example/").stdout) == "routed"
    assert secret_of(router.get("ghcr.io").stdout) == "primary"


def test_an_edited_config_takes_effect_at_the_next_call(installation: Installation, env: dict[str, str]) -> None:
    """The agent keeps one router per caller environment for as long as it runs."""
    configured(env, "primary: cryptfile\n")
    router = helper(installation, env)
    stored_ok(router, "first.example", "alice", "1")
    configured(env, "primary: keyring\n")
    stored_ok(router, "second.example", "bob", "2")
    assert json.loads(helper(installation, env, "cryptfile").list().stdout) == {"first.example": "alice"}
    assert json.loads(helper(installation, env, "keyring").list().stdout) == {"second.example": "bob"}


@pytest.mark.parametrize(
    "server, store",
    [
        ("a.corp.example", "keyring"),
        ("a.b.corp.example", "keyring"),
        ("corp.example", "cryptfile"),  # the wildcard needs a label before the domain
        ("evilcorp.example", "cryptfile"),  # anchored on a label boundary
        ("corp.example.evil.net", "cryptfile"),  # anchored at the end
        ("build.corp.example:5000", "apptainer"),  # a port makes a pattern more specific
        ("build.corp.example", "singularity"),  # an exact host beats a wildcard
        ("BUILD.Corp.Example:5000", "apptainer"),  # hosts are case-insensitive
    ],
)
def test_the_most_specific_anchored_route_wins(
    installation: Installation, env: dict[str, str], server: str, store: str
) -> None:
    configured(
        env,
        'primary: cryptfile\nroutes:\n  "*.corp.example": keyring\n  build.corp.example: singularity\n'
        '  "build.corp.example:5000": apptainer\n',
    )
    stored_ok(helper(installation, env), server, "alice", "s3cret")
    assert json.loads(helper(installation, env, store).list().stdout) == {server: "alice"}


# -- reads -----------------------------------------------------------------------------------------


def test_a_login_apptainer_made_is_found_after_the_primary(installation: Installation, env: dict[str, str]) -> None:
    apptainer_login(env, "apptainer-only.example", "carol", "from-apptainer")
    router = helper(installation, env)
    assert secret_of(router.get("apptainer-only.example").stdout) == "from-apptainer"
    stored_ok(router, "apptainer-only.example", "carol", "from-keyring")
    assert secret_of(router.get("apptainer-only.example").stdout) == "from-keyring", "the primary is read first"


def test_list_merges_every_source_one_entry_per_registry(installation: Installation, env: dict[str, str]) -> None:
    apptainer_login(env, "https://index.docker.io/v1/", "dave", "hub")
    apptainer_login_text = (Path(env["HOME"]) / ".apptainer" / "docker-config.json").read_text()
    config = json.loads(apptainer_login_text)
    config["auths"]["both.example"] = {"auth": base64.b64encode(b"erin:old").decode()}
    (Path(env["HOME"]) / ".apptainer" / "docker-config.json").write_text(json.dumps(config))
    router = helper(installation, env)
    stored_ok(router, "both.example", "erin", "new")
    stored_ok(router, "docker.io", "dave", "hub")
    assert json.loads(router.list().stdout) == {"both.example": "erin", "docker.io": "dave"}


def test_an_external_helper_in_the_read_list_is_called_over_the_protocol(
    installation: Installation, env: dict[str, str]
) -> None:
    """Go's docker-credential-secretservice, found on PATH as `secretservice`, with a config naming it."""
    Helper(GO_SECRETSERVICE, env).store(SERVER, "frank", "from-go")
    configured(env, "primary: cryptfile\nread: [primary, secretservice]\n")
    router = helper(installation, {**env, "PATH": f"{os.path.dirname(GO_SECRETSERVICE)}:{env['PATH']}"})
    assert secret_of(router.get(SERVER).stdout) == "from-go"
    assert json.loads(router.list().stdout) == {SERVER: "frank"}


def test_a_source_that_fails_is_reported_only_when_no_other_source_has_it(
    installation: Installation, env: dict[str, str]
) -> None:
    configured(env, "primary: cryptfile\nread: [primary, missing-helper]\n")
    router = helper(installation, env)
    stored_ok(router, SERVER, "alice", "s3cret")
    assert secret_of(router.get(SERVER).stdout) == "s3cret"
    missing = router.get("elsewhere.example")
    assert (missing.returncode, missing.stderr) == (1, b"")
    assert (
        missing.text
        == "docker-credential-missing-helper is not on PATH: install it, or name another store with --store\n"
    )


# -- the environment source ------------------------------------------------------------------------


def test_per_registry_variables_answer_for_the_registry_they_are_bound_to_only(
    installation: Installation, env: dict[str, str]
) -> None:
    router = helper(
        installation,
        {
            **env,
            "CREDBRIDGE_AUTH_CI_REGISTRY": "registry.example.com:5000",
            "CREDBRIDGE_AUTH_CI_USERNAME": "ci",
            "CREDBRIDGE_AUTH_CI_PASSWORD": "ci-token",
        },
    )
    assert json.loads(router.get("https://registry.example.com:5000").stdout) == {
        "ServerURL": "https://registry.example.com:5000",
        "Username": "ci",
        "Secret": "ci-token",
    }
    assert router.get("registry.example.com").returncode == 1
    assert json.loads(router.list().stdout) == {"registry.example.com:5000": "ci"}, "bound by value: listed"


def test_apptainer_variables_take_precedence_over_singularity_and_docker_ones(
    installation: Installation, env: dict[str, str]
) -> None:
    variables = {
        "DOCKER_USERNAME": "d",
        "DOCKER_PASSWORD": "docker-pw",
        "CREDBRIDGE_ENV_REGISTRIES": "any.example",
        "SINGULARITY_DOCKER_USERNAME": "s",
        "SINGULARITY_DOCKER_PASSWORD": "singularity-pw",
    }
    router = helper(installation, {**env, **variables})
    assert secret_of(router.get("any.example").stdout) == "singularity-pw"
    router = helper(
        installation,
        {**env, **variables, "APPTAINER_DOCKER_USERNAME": "a", "APPTAINER_DOCKER_PASSWORD": "apptainer-pw"},
    )
    assert secret_of(router.get("any.example").stdout) == "apptainer-pw"


def test_the_global_pairs_go_only_where_scoped_and_then_before_stored_logins(
    installation: Installation, env: dict[str, str]
) -> None:
    stored_ok(helper(installation, env), SERVER, "alice", "stored")
    ci = {**env, "DOCKER_USERNAME": "ci", "DOCKER_PASSWORD": "ci-token"}
    assert secret_of(helper(installation, ci).get(SERVER).stdout) == "stored"
    assert helper(installation, ci).get("https://index.docker.io/v1/").returncode == 1
    scoped = {**ci, "CREDBRIDGE_ENV_REGISTRIES": "docker.io,*.corp.example"}
    assert secret_of(helper(installation, scoped).get(SERVER).stdout) == "stored"
    assert secret_of(helper(installation, scoped).get("https://index.docker.io/v1/").stdout) == "ci-token"
    scoped_here = {**ci, "CREDBRIDGE_ENV_REGISTRIES": SERVER}
    assert secret_of(helper(installation, scoped_here).get(SERVER).stdout) == "ci-token"


def test_half_a_bound_pair_is_one_line_naming_the_missing_half(installation: Installation, env: dict[str, str]) -> None:
    result = helper(installation, {**env, "CREDBRIDGE_AUTH_A_REGISTRY": SERVER, "CREDBRIDGE_AUTH_A_USERNAME": "a"}).get(
        SERVER
    )
    assert (result.returncode, result.stderr) == (1, b"")
    assert result.text == (
        f"CREDBRIDGE_AUTH_A_REGISTRY binds {SERVER} but CREDBRIDGE_AUTH_A_PASSWORD is not set: "
        "set it, or unset CREDBRIDGE_AUTH_A_REGISTRY\n"
    )


def test_the_environment_cannot_be_written(installation: Installation, env: dict[str, str]) -> None:
    configured(env, "primary: environment\n")
    result = helper(installation, env).store(SERVER, "alice", "s3cret")
    assert result.returncode == 1
    assert "must name a store that keeps logins, not `environment`" in result.text


# -- erase -----------------------------------------------------------------------------------------


def test_erase_removes_the_login_from_every_source_a_read_looks_at(
    installation: Installation, env: dict[str, str]
) -> None:
    apptainer_login(env, SERVER, "alice", "old-in-apptainer")
    router = helper(installation, env)
    stored_ok(router, SERVER, "alice", "in-keyring")
    erased = router.erase(f"https://{SERVER}")
    assert (erased.returncode, erased.stdout) == (0, b"")
    assert router.get(SERVER).stdout == b"credentials not found in native keychain\n"
    assert json.loads((Path(env["HOME"]) / ".apptainer" / "docker-config.json").read_text())["auths"] == {}


# -- loops -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, key",
    [
        ("primary: credbridge\n", "primary"),
        ("routes:\n  ghcr.io: credbridge\n", "routes.ghcr.io"),
        ("read: [environment, credbridge]\n", "read"),
    ],
)
def test_a_config_naming_the_router_itself_is_one_clear_line(
    installation: Installation, env: dict[str, str], config: str, key: str
) -> None:
    configured(env, config)
    result = helper(installation, env).get(SERVER)
    assert (result.returncode, result.stderr) == (1, b"")
    assert result.text.startswith(f"`{key}` in ") and "names the router itself (credbridge)" in result.text


def test_apptainer_delegating_back_to_the_router_is_skipped_not_recursed(
    installation: Installation, env: dict[str, str]
) -> None:
    """`credbridge setup` writes credsStore: credbridge into Apptainer's docker-config; the router reads that
    file as one of its sources, and must not call itself through it."""
    directory = Path(env["HOME"]) / ".apptainer"
    directory.mkdir(mode=0o700)
    (directory / "docker-config.json").write_text('{"credsStore": "credbridge"}')
    router = helper(installation, env)
    stored_ok(router, SERVER, "alice", "s3cret")
    assert secret_of(router.get(SERVER).stdout) == "s3cret"
    assert router.get("nowhere.example").stdout == b"credentials not found in native keychain\n"


def test_a_helper_that_calls_the_router_back_ends_with_a_clear_error(
    installation: Installation, env: dict[str, str], tmp_path: Path
) -> None:
    """A user's wrapper helper that hands every call to the router: routed to, it would recurse forever."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "docker-credential-wrapper"
    wrapper.write_text('#!/bin/sh\nexec docker-credential-credbridge "$@"\n')
    wrapper.chmod(0o755)
    configured(env, "primary: wrapper\n")
    result = helper(installation, {**env, "PATH": f"{bindir}:{env['PATH']}"}).store(SERVER, "alice", "s3cret")
    assert (result.returncode, result.stderr) == (1, b"")
    assert result.text.startswith(
        "docker-credential-wrapper store failed: docker-credential-credbridge was called "
        "back by a store it routes to (credbridge -> credbridge)"
    ), result.text


# -- configuration mistakes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, message",
    [
        ("primary: [keyring\n", "is not valid YAML (line 2): fix or remove it"),
        ("- keyring\n", "must be a YAML mapping (key: value lines)"),
        ("routes: [ghcr.io]\n", "`routes` in"),
        ("routes:\n  'ghcr.io/path': keyring\n", "is not a registry host[:port] or *.domain[:port]"),
        ("read: []\n", "`read` in"),
    ],
)
def test_a_broken_config_file_is_one_line_naming_the_file(
    installation: Installation, env: dict[str, str], config: str, message: str
) -> None:
    configured(env, config)
    result = helper(installation, env).list()
    assert (result.returncode, result.stderr) == (1, b"")
    assert result.text.count("\n") == 1 and message in result.text and "config.yaml" in result.text, result.text
