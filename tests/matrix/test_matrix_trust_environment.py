"""Trust in the environment source, and the router with a store it cannot open.

A credential helper hands a secret to exactly one registry. These tests
attack the router's environment source as a CI job's untrusted Dockerfile
would (`FROM evil.example.com/...`), through the installed
docker-credential-credbridge, the credbridge command and skopeo against a
real registry: a variable reaches only the registry it is bound to by value,
the global pairs reach none unless CREDBRIDGE_ENV_REGISTRIES names it, and
DOCKER_AUTH_CONFIG is read with the anchored matching of stored logins.
Then the router with a locked cryptfile or no Secret Service: what the other
stores hold is still served, and an anonymous pull is never an error.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SERVING, Helper, Installation, router_env
from tests.stores.test_router import apptainer_login, configured, stored_ok
from tests.support.matrix import NOT_FOUND, assert_one_line_error
from tests.support.process import Result, run
from tests.support.registry import Registry, free_port

CI_SECRET = "ci-s3cret-must-stay-home"
GLOBAL_PAIRS = [
    ("APPTAINER_DOCKER_USERNAME", "APPTAINER_DOCKER_PASSWORD"),
    ("SINGULARITY_DOCKER_USERNAME", "SINGULARITY_DOCKER_PASSWORD"),
    ("DOCKER_USERNAME", "DOCKER_PASSWORD"),
]


@pytest.fixture(params=SERVING)
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The router in a fresh HOME on the private keyring and an unlocked cryptfile, by the agent or in process."""
    return router_env(routed=False)(request, request.param)


def router(installation: Installation, env: dict[str, str], **variables: str) -> Helper:
    return Helper(installation.executable("docker-credential-credbridge"), {**env, **variables})


def credbridge(installation: Installation, env: dict[str, str], *args: str) -> Result:
    return run([installation.executable("credbridge"), *args], b"", env, timeout=60)


def warnings(result: Result, warned: list[str]) -> None:
    """stderr is one warning line for each expected text (in order), nothing else."""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == len(warned), result
    for line, text in zip(lines, warned):
        assert line.startswith("credbridge: warning: ") and text in line, (line, text)
        assert CI_SECRET not in line


def answer(result: Result, warned: tuple[str, ...] | list[str] = ()) -> tuple[str, str]:
    assert result.returncode == 0, result
    warnings(result, list(warned))
    found = json.loads(result.stdout)
    return found["Username"], found["Secret"]


def assert_not_found(result: Result, warned: tuple[str, ...] | list[str] = ()) -> None:
    assert (result.returncode, result.stdout) == (1, NOT_FOUND), result
    warnings(result, list(warned))


def bound(name: str, registry: str, username: str = "ci-bot", password: str = CI_SECRET) -> dict[str, str]:
    return {
        f"CREDBRIDGE_AUTH_{name}_REGISTRY": registry,
        f"CREDBRIDGE_AUTH_{name}_USERNAME": username,
        f"CREDBRIDGE_AUTH_{name}_PASSWORD": password,
    }


# -- finding 1: the global pairs ------------------------------------------------------------------


@pytest.mark.parametrize("pair", GLOBAL_PAIRS, ids=[pair[0] for pair in GLOBAL_PAIRS])
def test_a_global_pair_goes_to_no_registry_unless_credbridge_env_registries_names_it(
    installation: Installation, env: dict[str, str], pair: tuple[str, str]
) -> None:
    ci = router(installation, env, **{pair[0]: "ci-bot", pair[1]: CI_SECRET})
    for registry in ("evil.example.com", "docker.io", "https://index.docker.io/v1/", "ghcr.io"):
        assert_not_found(ci.get(registry))
    scoped = router(installation, ci.env, CREDBRIDGE_ENV_REGISTRIES="docker.io")
    assert answer(scoped.get("https://index.docker.io/v1/")) == ("ci-bot", CI_SECRET)
    assert answer(scoped.get("docker.io")) == ("ci-bot", CI_SECRET)
    for registry in ("evil.example.com", "docker.io.evil.example.com", "ghcr.io"):
        assert_not_found(scoped.get(registry))


@pytest.mark.parametrize(
    "scope, offered, refused",
    [
        ("127.0.0.1", ["127.0.0.1", "http://127.0.0.1/"], ["127.0.0.1:6000", "127.0.0.1:5000", "127.0.0.1:80"]),
        (
            "docker.io",
            ["docker.io", "https://index.docker.io/v1/"],
            ["docker.io:443", "index.docker.io:443", "docker.io:5000"],
        ),
        (
            "127.0.0.1:5000",
            ["127.0.0.1:5000", "http://127.0.0.1:5000/"],
            ["127.0.0.1", "127.0.0.1:6000", "127.0.0.1:50000"],
        ),
        ("*.corp.example", ["build.corp.example", "a.b.corp.example"], ["build.corp.example:5000", "corp.example"]),
        ("*.corp.example:5000", ["build.corp.example:5000"], ["build.corp.example", "build.corp.example:5001"]),
    ],
)
def test_a_scope_without_a_port_releases_the_global_pair_to_the_default_port_only(
    installation: Installation, env: dict[str, str], scope: str, offered: list[str], refused: list[str]
) -> None:
    """On a shared CI host another user listening on some loopback port must not get the token."""
    ci = router(installation, env, DOCKER_USERNAME="ci-bot", DOCKER_PASSWORD=CI_SECRET, CREDBRIDGE_ENV_REGISTRIES=scope)
    for registry in offered:
        assert answer(ci.get(registry)) == ("ci-bot", CI_SECRET), registry
    for registry in refused:
        assert_not_found(ci.get(registry))


def test_config_says_exactly_which_ports_a_scope_releases_the_global_pair_to(
    installation: Installation, env: dict[str, str]
) -> None:
    variables = {
        "DOCKER_USERNAME": "ci-bot",
        "DOCKER_PASSWORD": CI_SECRET,
        "CREDBRIDGE_ENV_REGISTRIES": "127.0.0.1,*.corp.example:5000",
    }
    shown = credbridge(installation, {**env, **variables}, "config")
    assert shown.returncode == 0, shown
    assert "DOCKER_USERNAME/DOCKER_PASSWORD -> 127.0.0.1 (default port only), *.corp.example:5000" in shown.text, (
        shown.text
    )


@pytest.mark.parametrize(
    "query",
    [
        "evil.com#.corp.example",
        "evil.com?.corp.example",
        "evil.com\\.corp.example",
        "evil.com%2f.corp.example",
        "evil.com .corp.example",
        "user@evil.com@x.corp.example",
        "x.corp.example@evil.com",
        "evil.com/.corp.example",
        "https://evil.com#.corp.example",
        "evil_com.corp.example",
        "-x.corp.example",
        "x..corp.example",
        "x.corp.example:5000x",
        "x.corp.example:",
    ],
)
def test_a_wildcard_scope_releases_the_global_pair_only_to_real_host_names(
    installation: Installation, env: dict[str, str], query: str
) -> None:
    ci = router(
        installation,
        env,
        DOCKER_USERNAME="ci-bot",
        DOCKER_PASSWORD=CI_SECRET,
        CREDBRIDGE_ENV_REGISTRIES="*.corp.example",
    )
    assert answer(ci.get("build.corp.example")) == ("ci-bot", CI_SECRET)
    assert answer(ci.get("https://build.corp.example/v2/")) == ("ci-bot", CI_SECRET), "a docker path is allowed"
    assert_not_found(ci.get(query))


@pytest.mark.parametrize("pattern", ["*.io", "*.example", "*.localhost", "*", "*.*.example", "a..b", "-a.example"])
def test_a_scope_pattern_wider_than_one_domain_is_refused_with_one_line(
    installation: Installation, env: dict[str, str], pattern: str
) -> None:
    ci = router(
        installation,
        env,
        DOCKER_USERNAME="ci-bot",
        DOCKER_PASSWORD=CI_SECRET,
        CREDBRIDGE_ENV_REGISTRIES=f"{pattern},docker.io",
    )
    assert answer(ci.get("docker.io"), warned=[f"{pattern!r} in CREDBRIDGE_ENV_REGISTRIES"]) == ("ci-bot", CI_SECRET)
    assert_not_found(ci.get("ghcr.io"), warned=[f"{pattern!r} in CREDBRIDGE_ENV_REGISTRIES"])
    shown = credbridge(installation, {**ci.env}, "config")
    assert f"{pattern!r} in CREDBRIDGE_ENV_REGISTRIES" in shown.text, shown.text


@pytest.mark.parametrize("pattern", ["*.io", "*.example", "a..b"])
def test_a_route_pattern_wider_than_one_domain_is_refused_with_one_line(
    installation: Installation, env: dict[str, str], pattern: str
) -> None:
    routed = router(installation, configured(env, f"routes:\n  '{pattern}': cryptfile\n"))
    assert_one_line_error(routed.get("ghcr.io"), "route pattern", pattern)


def test_a_global_pair_never_shadows_a_stored_login(installation: Installation, env: dict[str, str]) -> None:
    stored_ok(router(installation, env), "ghcr.io", "alice", "alice-ghcr-token")
    ci = router(installation, env, DOCKER_USERNAME="ci-bot", DOCKER_PASSWORD=CI_SECRET)
    assert answer(ci.get("ghcr.io")) == ("alice", "alice-ghcr-token")
    scoped_elsewhere = router(installation, ci.env, CREDBRIDGE_ENV_REGISTRIES="docker.io")
    assert answer(scoped_elsewhere.get("ghcr.io")) == ("alice", "alice-ghcr-token")


def test_half_a_global_pair_is_ignored_not_an_error(installation: Installation, env: dict[str, str]) -> None:
    """DOCKER_USERNAME alone often names the account images are pushed under."""
    stored_ok(router(installation, env), "ghcr.io", "alice", "alice-ghcr-token")
    half = router(
        installation,
        env,
        DOCKER_USERNAME="myorg",
        APPTAINER_DOCKER_PASSWORD=CI_SECRET,
        CREDBRIDGE_ENV_REGISTRIES="docker.io,ghcr.io",
    )
    assert_not_found(half.get("docker.io"))
    assert answer(half.get("ghcr.io")) == ("alice", "alice-ghcr-token")


# -- finding 2: per-registry variables bound by value ---------------------------------------------


def test_the_old_mangled_names_reach_no_registry(installation: Installation, env: dict[str, str]) -> None:
    """The issue's reproduction: one pair read by registry.gitlab.com and registry-gitlab.com alike."""
    old = router(
        installation,
        env,
        CREDBRIDGE_ENV_REGISTRIES="registry.gitlab.com",
        CREDBRIDGE_AUTH_REGISTRY_GITLAB_COM_USERNAME="u",
        CREDBRIDGE_AUTH_REGISTRY_GITLAB_COM_PASSWORD=CI_SECRET,
    )
    for registry in ("registry-gitlab.com", "registry.gitlab-com", "registry.gitlab.com"):
        assert_not_found(old.get(registry))


@pytest.mark.parametrize(
    "registry, lookalikes",
    [
        (
            "registry.gitlab.com",
            [
                "registry-gitlab.com",
                "registry.gitlab-com",
                "registry.gitlab.com.evil.net",
                "evil.registry.gitlab.com",
                "registry.gitlab.com:5000",
            ],
        ),
        ("myreg.azurecr.io", ["myreg-azurecr.io", "myreg.azurecr-io"]),
        ("a.b:5000", ["a-b:5000", "a.b", "a.b:5001", "a.b:50000"]),
    ],
)
def test_a_pair_is_offered_only_to_the_registry_it_is_bound_to(
    installation: Installation, env: dict[str, str], registry: str, lookalikes: list[str]
) -> None:
    ci = router(installation, env, **bound("MYJOB", registry))
    assert answer(ci.get(registry)) == ("ci-bot", CI_SECRET)
    assert answer(ci.get(f"https://{registry.upper()}/")) == ("ci-bot", CI_SECRET), "canonical spellings meet"
    for lookalike in lookalikes:
        assert_not_found(ci.get(lookalike))


def test_a_binding_is_one_exact_registry_never_a_wildcard(installation: Installation, env: dict[str, str]) -> None:
    ci = router(installation, env, **bound("CORP", "*.corp.example"))
    for registry in ("build.corp.example", "*.corp.example", "corp.example"):
        assert_not_found(ci.get(registry))


def test_two_names_binding_one_registry_are_refused_never_guessed(
    installation: Installation, env: dict[str, str]
) -> None:
    ci = router(
        installation,
        env,
        **bound("A", "registry.gitlab.com", password="first-" + CI_SECRET),
        **bound("B", "https://REGISTRY.gitlab.com/", password="second-" + CI_SECRET),
    )
    refused = ci.get("registry.gitlab.com")
    assert_one_line_error(refused, "CREDBRIDGE_AUTH_A_REGISTRY", "CREDBRIDGE_AUTH_B_REGISTRY", "registry.gitlab.com")
    assert CI_SECRET not in refused.text
    assert_not_found(ci.get("registry-gitlab.com"))


def test_a_bound_registry_missing_its_password_names_the_variable(
    installation: Installation, env: dict[str, str]
) -> None:
    ci = router(installation, env, CREDBRIDGE_AUTH_X_REGISTRY="ghcr.io", CREDBRIDGE_AUTH_X_USERNAME="ci-bot")
    assert_one_line_error(ci.get("ghcr.io"), "CREDBRIDGE_AUTH_X_PASSWORD")
    assert_not_found(ci.get("docker.io"))


# -- DOCKER_AUTH_CONFIG ---------------------------------------------------------------------------


def docker_auth_config() -> str:
    hub = base64.b64encode(f"hub-bot:{CI_SECRET}".encode()).decode()
    return json.dumps(
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": hub},
                "ghcr.io": {"identitytoken": "ghcr-" + CI_SECRET},
                "quay.io": {"username": "quay-bot", "password": "quay-" + CI_SECRET},
                "helper-only.example": {},
            },
            "credsStore": "credbridge",
        }
    )


def test_docker_auth_config_answers_its_own_registries_with_stored_login_matching(
    installation: Installation, env: dict[str, str]
) -> None:
    ci = router(installation, env, DOCKER_AUTH_CONFIG=docker_auth_config())
    for hub in ("docker.io", "https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"):
        assert answer(ci.get(hub)) == ("hub-bot", CI_SECRET), hub
    assert answer(ci.get("ghcr.io")) == ("<token>", "ghcr-" + CI_SECRET), "docker's identity-token convention"
    assert answer(ci.get("https://quay.io")) == ("quay-bot", "quay-" + CI_SECRET)
    for other in ("evil.example.com", "ghcr.io.evil.net", "docker.io.evil.net", "helper-only.example", "quay.io:444"):
        assert_not_found(ci.get(other))


def test_bad_docker_auth_config_is_one_line_naming_the_variable_never_its_content(
    installation: Installation, env: dict[str, str]
) -> None:
    ci = router(installation, env, DOCKER_AUTH_CONFIG='{"auths": {"x": {"auth": "' + CI_SECRET + '"')
    refused = ci.get("docker.io")
    assert_one_line_error(refused, "DOCKER_AUTH_CONFIG", "not valid JSON")
    assert CI_SECRET not in refused.text
    stored_ok(router(installation, env), "ghcr.io", "alice", "alice-ghcr-token")
    assert answer(ci.get("ghcr.io"), warned=["DOCKER_AUTH_CONFIG is not valid JSON"]) == (
        "alice",
        "alice-ghcr-token",
    ), "what a store holds is still served, the mistake is said"


@pytest.mark.parametrize(
    "variables, warned",
    [
        (
            {**bound("A", "registry.gitlab.com"), **bound("B", "https://registry.gitlab.com/")},
            "CREDBRIDGE_AUTH_A_REGISTRY and CREDBRIDGE_AUTH_B_REGISTRY bind the same registry registry.gitlab.com",
        ),
        (
            {"CREDBRIDGE_AUTH_X_REGISTRY": "registry.gitlab.com", "CREDBRIDGE_AUTH_X_USERNAME": "ci-bot"},
            "CREDBRIDGE_AUTH_X_PASSWORD is not set",
        ),
        (
            {"DOCKER_AUTH_CONFIG": '{"auths": {"registry.gitlab.com": {"auth": "' + CI_SECRET + '"'},
            "DOCKER_AUTH_CONFIG is not valid JSON",
        ),
        ({"DOCKER_AUTH_CONFIG": "[1]"}, "DOCKER_AUTH_CONFIG is not a docker config.json"),
    ],
    ids=["two-names", "half-bound", "bad-json", "not-a-config"],
)
def test_an_environment_mistake_is_a_warning_when_a_stored_login_answers(
    installation: Installation, env: dict[str, str], variables: dict[str, str], warned: str
) -> None:
    stored_ok(router(installation, env), "registry.gitlab.com", "alice", "alice-token")
    ci = router(installation, env, **variables)
    assert answer(ci.get("registry.gitlab.com"), warned=[warned]) == ("alice", "alice-token")


def test_an_invalid_docker_auth_config_stops_no_other_environment_login(
    installation: Installation, env: dict[str, str]
) -> None:
    ci = router(
        installation,
        env,
        DOCKER_AUTH_CONFIG="{not json",
        DOCKER_USERNAME="ci-bot",
        DOCKER_PASSWORD=CI_SECRET,
        CREDBRIDGE_ENV_REGISTRIES="docker.io",
        **bound("GL", "registry.gitlab.com", "gl-bot", "gl-" + CI_SECRET),
    )
    assert answer(ci.get("docker.io"), warned=["DOCKER_AUTH_CONFIG"]) == ("ci-bot", CI_SECRET)
    assert answer(ci.get("registry.gitlab.com"), warned=["DOCKER_AUTH_CONFIG"]) == ("gl-bot", "gl-" + CI_SECRET)
    assert_one_line_error(ci.get("ghcr.io"), "DOCKER_AUTH_CONFIG", "not valid JSON")


def test_list_hides_a_password_holding_a_slash_and_keeps_its_columns(
    installation: Installation, env: dict[str, str]
) -> None:
    for server, username in (
        ("https://bob:PW/LEAK3@reg3.example", "bob"),
        ("https://al:pw-leak4@reg4.example", "al"),
        ("short.example", "carol-the-long-named"),
    ):
        stored_ok(router(installation, env), server, username, "token-" + username)
    listed = credbridge(installation, env, "list")
    assert (listed.returncode, listed.stderr) == (0, b""), listed
    assert "LEAK3" not in listed.text and "leak4" not in listed.text, listed.text
    header, *rows = listed.text.splitlines()
    user_at, store_at = header.index("USER"), header.index("STORE")
    assert len(rows) == 3, listed.text
    for row in rows:
        assert row[user_at - 2 : user_at] == "  " and row[user_at] != " ", listed.text
        assert row[store_at - 2 : store_at] == "  " and row[store_at:] == "keyring", listed.text


def test_list_shows_environment_logins_once_each_first_source_winning(
    installation: Installation, env: dict[str, str]
) -> None:
    stored_ok(router(installation, env), "registry.gitlab.com", "alice", "alice-token")
    stored_ok(router(installation, env), "kept.example", "alice", "kept-token")
    variables = {
        **bound("GL", "registry.gitlab.com"),
        "DOCKER_AUTH_CONFIG": docker_auth_config(),
        "DOCKER_USERNAME": "ci-bot",
        "DOCKER_PASSWORD": CI_SECRET,
        "CREDBRIDGE_ENV_REGISTRIES": "docker.io,*.corp.example",
    }
    listed = router(installation, env, **variables).list()
    assert (listed.returncode, listed.stderr) == (0, b""), listed
    assert json.loads(listed.stdout) == {
        "registry.gitlab.com": "ci-bot",
        "https://index.docker.io/v1/": "hub-bot",
        "ghcr.io": "<token>",
        "quay.io": "quay-bot",
        "kept.example": "alice",
    }
    rows = json.loads(credbridge(installation, {**env, **variables}, "list", "--json").stdout)
    assert {(row["registry"], row["store"]) for row in rows} == {
        ("registry.gitlab.com", "environment"),
        ("https://index.docker.io/v1/", "environment"),
        ("ghcr.io", "environment"),
        ("quay.io", "environment"),
        ("kept.example", "keyring"),
    }


def test_logout_says_when_the_environment_still_supplies_the_login(
    installation: Installation, env: dict[str, str]
) -> None:
    stored_ok(router(installation, env), "registry.gitlab.com", "alice", "alice-token")
    ci = {**env, **bound("GL", "registry.gitlab.com")}
    done = credbridge(installation, ci, "logout", "registry.gitlab.com")
    assert (done.returncode, done.stderr) == (0, b""), done
    assert done.text == (
        "Removed the login for registry.gitlab.com; the environment still supplies one: "
        "unset the variables `credbridge config` lists\n"
    )
    assert_not_found(router(installation, env).get("registry.gitlab.com"))


# -- doctor and config ----------------------------------------------------------------------------


def test_config_and_doctor_show_each_environment_login_and_warn_about_a_pair_bound_to_none(
    installation: Installation, env: dict[str, str]
) -> None:
    variables = {
        **bound("GL", "registry.gitlab.com"),
        "DOCKER_USERNAME": "ci-bot",
        "DOCKER_PASSWORD": CI_SECRET,
        "CREDBRIDGE_AUTH_OLD_USERNAME": "u",
        "CREDBRIDGE_AUTH_OLD_PASSWORD": CI_SECRET,
        "DOCKER_AUTH_CONFIG": docker_auth_config(),
    }
    shown = credbridge(installation, {**env, **variables}, "config")
    assert shown.returncode == 0, shown
    assert (
        "CREDBRIDGE_AUTH_GL_REGISTRY/CREDBRIDGE_AUTH_GL_USERNAME/CREDBRIDGE_AUTH_GL_PASSWORD -> registry.gitlab.com"
    ) in shown.text
    assert (
        "DOCKER_USERNAME/DOCKER_PASSWORD -> offered to no registry: set CREDBRIDGE_ENV_REGISTRIES=docker.io to use it"
    ) in shown.text
    assert "CREDBRIDGE_AUTH_OLD_USERNAME/CREDBRIDGE_AUTH_OLD_PASSWORD -> offered to no registry" in shown.text
    assert "DOCKER_AUTH_CONFIG -> https://index.docker.io/v1/, ghcr.io, quay.io" in shown.text
    doctor = credbridge(installation, {**env, **variables}, "doctor", "--json")
    found = [check for check in json.loads(doctor.stdout)["checks"] if check["topic"] == "environment"]
    assert {(check["status"], check["summary"], check["fix"]) for check in found} >= {
        (
            "warn",
            "DOCKER_USERNAME/DOCKER_PASSWORD -> offered to no registry",
            "set CREDBRIDGE_ENV_REGISTRIES=docker.io to use it",
        ),
        (
            "ok",
            "CREDBRIDGE_AUTH_GL_REGISTRY/CREDBRIDGE_AUTH_GL_USERNAME/CREDBRIDGE_AUTH_GL_PASSWORD -> "
            "registry.gitlab.com",
            "",
        ),
    }
    for output in (shown, doctor):
        assert CI_SECRET not in output.text and "ci-bot" not in output.text


# -- end to end: skopeo against a real registry ---------------------------------------------------


def test_skopeo_sends_the_global_pair_to_no_registry_it_was_not_bound_to(
    installation: Installation, env: dict[str, str], registry: Registry, tmp_path: Path
) -> None:
    """The registry's own password, set as the CI pair: a pull that gets in proves the pair was sent."""
    registries_conf = tmp_path / "registries.conf"
    registries_conf.write_text('credential-helpers = ["credbridge"]\n')
    auth_file = tmp_path / "auth.json"
    auth_file.write_text("{}")
    ci = {
        **env,
        "DOCKER_USERNAME": registry.username,
        "DOCKER_PASSWORD": registry.password,
        "REGISTRY_AUTH_FILE": str(auth_file),
    }

    def inspect(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "skopeo",
                "--registries-conf",
                str(registries_conf),
                "inspect",
                "--tls-verify=false",
                f"docker://{registry.test_image}",
            ],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
            check=False,
        )

    unbound = inspect(ci)
    assert unbound.returncode != 0 and "unauthorized" in unbound.stderr.lower(), unbound
    bound_here = inspect({**ci, "CREDBRIDGE_ENV_REGISTRIES": registry.host})
    assert bound_here.returncode == 0, bound_here
    assert json.loads(bound_here.stdout)["Name"] == registry.test_image.rpartition(":")[0]


# -- the router with a store it cannot open (issue 14) --------------------------------------------


@pytest.fixture
def headless(installation: Installation, tmp_path: Path) -> dict[str, str]:
    """A session with no D-Bus, its own runtime dir, served in process, and an Apptainer login."""
    home = tmp_path / "headless-home"
    runtime = tmp_path / "headless-run"
    for directory in (home, runtime):
        directory.mkdir(mode=0o700)
    apptainer_login({"HOME": str(home)}, "apptainer.example", "carol", "from-apptainer")
    return {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "PATH": f"{installation.bindir}:/usr/bin:/bin",
        "CREDBRIDGE_NO_AGENT": "1",
    }


def locked_cryptfile_holding(installation: Installation, env: dict[str, str], server: str) -> None:
    """A cryptfile made through a passphrase file, then used without it: locked, and never unlocked here."""
    passphrase = Path(env["HOME"]) / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    maker = Helper(
        installation.executable("docker-credential-cryptfile"), {**env, "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase)}
    )
    stored_ok(maker, server, "dave", "in-the-cryptfile")
    passphrase.unlink()


def test_a_locked_primary_hides_nothing_and_never_fails_an_anonymous_pull(
    installation: Installation, headless: dict[str, str]
) -> None:
    env = configured(headless, "primary: cryptfile\n")
    locked_cryptfile_holding(installation, env, "held.example")
    routed = router(installation, env)
    assert answer(routed.get("apptainer.example")) == ("carol", "from-apptainer")
    assert_not_found(routed.get("docker.io"))
    assert_not_found(routed.get("unknown.example"))
    assert_one_line_error(routed.get("held.example"), "locked", "credbridge unlock")
    listed = credbridge(installation, env, "list")
    assert (listed.returncode, listed.stderr) == (0, b""), listed
    lines = listed.text.splitlines()
    assert any(line.split() == ["apptainer.example", "carol", "apptainer"] for line in lines), listed.text
    assert any(line.startswith("cryptfile: ") and "locked" in line and "credbridge unlock" in line for line in lines), (
        listed.text
    )
    assert json.loads(routed.list().stdout) == {"apptainer.example": "carol"}


def test_an_unreachable_keyring_reads_as_not_found_but_a_write_to_it_still_fails(
    installation: Installation, headless: dict[str, str]
) -> None:
    env = configured(headless, "primary: keyring\n")
    routed = router(installation, env)
    assert answer(routed.get("apptainer.example")) == ("carol", "from-apptainer")
    assert_not_found(routed.get("unknown.example"))
    assert_one_line_error(routed.store("new.example", "erin", "s3cret"), "D-Bus")
    listed = credbridge(installation, env, "list")
    assert (listed.returncode, listed.stderr) == (0, b""), listed
    assert any(line.startswith("keyring: ") and "D-Bus" in line for line in listed.text.splitlines()), listed.text


def test_a_vault_that_does_not_answer_reads_as_not_found_but_a_write_to_it_still_fails(
    installation: Installation, headless: dict[str, str]
) -> None:
    env = {
        **configured(headless, "primary: vault\n"),
        "VAULT_ADDR": f"http://127.0.0.1:{free_port()}",
        "VAULT_TOKEN": "token-for-a-vault-that-is-down",
    }
    routed = router(installation, env)
    assert answer(routed.get("apptainer.example")) == ("carol", "from-apptainer")
    assert_not_found(routed.get("unknown.example"))
    assert_one_line_error(routed.store("new.example", "erin", "s3cret"), "cannot use Vault", "connection refused")
