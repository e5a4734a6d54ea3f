"""A secret goes over the network only to the server it is meant for, checked as it should be, and never into a log.

The attacker side is real: loopback HTTP servers that redirect (on 127.0.0.1)
to a recorder on 127.0.0.2 keeping every header it receives; OpenBao dev
servers over TLS with a CA of their own; passwords planted in the userinfo of
every URL a user can hand us, then looked for on every channel.
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Mapping

import pytest

from tests.conftest import SERVING, Helper, Installation, router_env, vault_env
from tests.support import openbao
from tests.support.matrix import EVERY_HELPER, build_helper, helper_id, store_message, with_env
from tests.support.process import Result, run
from tests.support.registry import recording_server, redirecting_to

#: Not the registry's or Vault's address, yet on this machine: where a redirect would carry a stolen credential.
THIEF_HOST = "127.0.0.2"
PASSWORD = "hunter2pw-7d3e41"


@pytest.fixture(params=SERVING)
def serving(request: pytest.FixtureRequest) -> str:
    return request.param


def credbridge(installation: Installation, env: Mapping[str, str], *args: str, stdin: str = "") -> Result:
    return run([installation.executable("credbridge"), *args], stdin, env, timeout=60)


def one_line(text: bytes) -> str:
    assert text.endswith(b"\n") and text.count(b"\n") == 1, text
    return text.decode()


# -- credbridge login: the registry check -----------------------------------------------------------


def thief_answer(_method: str, path: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A registry that takes any password: asks for Basic credentials, then says yes (and keeps them)."""
    if path.startswith("/v2/") and "authorization" not in headers:
        return 401, {"WWW-Authenticate": 'Basic realm="thief"'}, b""
    return 200, {"Content-Type": "application/json"}, b'{"token": "stolen"}'


def registry_luring_to(thief: str, trap: str, own: dict[str, str]):
    """A registry on 127.0.0.1 that sends the login check to `thief` at the step named by `trap`."""

    def answer(_method: str, path: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        if trap == "challenge" or "authorization" in headers or path.startswith("/token"):
            return 302, {"Location": thief + path}, b""
        if trap == "token-service":
            return 401, {"WWW-Authenticate": f'Bearer realm="{own["url"]}/token",service="registry"'}, b""
        return 401, {"WWW-Authenticate": 'Basic realm="registry"'}, b""

    return answer


@pytest.mark.parametrize("trap", ["basic-answer", "challenge", "token-service"])
def test_login_never_sends_the_password_where_a_redirect_points(
    request: pytest.FixtureRequest, installation: Installation, trap: str
) -> None:
    env = router_env(routed=True)(request, "direct")
    own: dict[str, str] = {}
    with (
        recording_server(THIEF_HOST, thief_answer) as thief,
        recording_server("127.0.0.1", registry_luring_to(thief.url, trap, own)) as registry,
    ):
        own["url"] = registry.url
        host = registry.url.removeprefix("http://")
        done = credbridge(installation, env, "login", "--password-stdin", "-u", "alice", host, stdin=PASSWORD + "\n")
    assert thief.header_values("Authorization") == []
    assert (done.returncode, done.stdout) == (1, b""), done
    line = one_line(done.stderr)
    assert "redirected" in line and thief.url in line, line
    assert credbridge(installation, env, "list", "--json").text == "[]\n"


def registry_naming_realm(realm: str):
    """A registry on loopback whose challenge names `realm` as its token service."""

    def answer(_method: str, _path: str, _headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="registry"'}, b""

    return answer


def login_to(installation: Installation, env: Mapping[str, str], registry_url: str) -> Result:
    host = registry_url.split("://", 1)[1]
    return credbridge(installation, env, "login", "--password-stdin", "-u", "alice", host, stdin=PASSWORD + "\n")


def assert_realm_refused(installation: Installation, env: Mapping[str, str], done: Result, realm: str) -> None:
    assert (done.returncode, done.stdout) == (1, b""), done
    line = one_line(done.stderr)
    assert "token service" in line and realm in line and "https" in line, line
    assert credbridge(installation, env, "list", "--json").text == "[]\n"


@pytest.mark.parametrize("kind", ["file", "data", "fifo"])
def test_login_refuses_a_token_service_that_is_not_http(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path, kind: str
) -> None:
    """urllib would read a local file, a data: URL or a pipe (blocking forever) as the token service's yes."""
    env = router_env(routed=True)(request, "direct")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    realm = {"file": "file:///etc/passwd#", "data": "data:,x#", "fifo": f"file://{fifo}#"}[kind]
    with recording_server("127.0.0.1", registry_naming_realm(realm)) as registry:
        done = login_to(installation, env, registry.url)
    assert_realm_refused(installation, env, done, realm)


def self_signed_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 and its certificate, which the client is told to trust."""
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    made = run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        timeout=30,
    )
    assert made.returncode == 0, made
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


def test_login_over_https_never_sends_the_password_to_a_plain_http_token_service(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path
) -> None:
    """A registry asked over TLS naming an http realm off this machine: the password would cross the network in
    clear text. The thief is the http proxy, where every plain-http request goes: it would see the header."""
    context, cert = self_signed_tls(tmp_path)
    realm = "http://tokens.example/token"
    with (
        recording_server(THIEF_HOST, thief_answer) as thief,
        recording_server("127.0.0.1", registry_naming_realm(realm), tls=context) as registry,
    ):
        env = {**router_env(routed=True)(request, "direct"), "SSL_CERT_FILE": str(cert), "http_proxy": thief.url}
        done = login_to(installation, env, registry.url)
    assert thief.header_values("Authorization") == []
    assert_realm_refused(installation, env, done, realm)


# -- docker-credential-vault: the token ------------------------------------------------------------


def vault_helper(request: pytest.FixtureRequest, installation: Installation, serving: str, **changes: str) -> Helper:
    return Helper(installation.executable("docker-credential-vault"), {**vault_env(request, serving), **changes})


def test_the_vault_token_never_follows_a_redirect_to_an_address_not_configured(
    request: pytest.FixtureRequest, installation: Installation, serving: str
) -> None:
    vault_answer = (200, {"Content-Type": "application/json"}, b'{"data": {"data": {}, "metadata": {"version": 1}}}')
    with (
        recording_server(THIEF_HOST, lambda *_: vault_answer) as thief,
        recording_server("127.0.0.1", redirecting_to(thief.url, 307)) as lure,
    ):
        result = vault_helper(request, installation, serving, VAULT_ADDR=lure.url).get("registry.example.com")
    assert thief.header_values("X-Vault-Token") == [] and thief.received == []
    assert (result.returncode, result.stderr) == (1, b""), result
    line = one_line(result.stdout)
    assert lure.url in line and thief.url in line and "redirect" in line, line


def test_a_standby_redirect_to_a_configured_address_is_followed(
    request: pytest.FixtureRequest, installation: Installation, vault_server: openbao.DevServer, serving: str
) -> None:
    """HA: a standby node answers 307 with the active node's address, one of those configured."""
    with recording_server("127.0.0.1", redirecting_to(vault_server.address, 307)) as standby:
        vault = vault_helper(request, installation, serving, VAULT_ADDR=f"{standby.url},{vault_server.address}")
        assert vault.store("registry.example.com", "robot", "s3cret").returncode == 0
        result = with_env(vault, CREDBRIDGE_DEBUG="1").get("registry.example.com")
    assert result.returncode == 0 and json.loads(result.stdout)["Secret"] == "s3cret", result
    assert f"vault answered address='{standby.url}' after_failures=[]".encode() in result.stderr, result.stderr.decode()


def test_a_plain_http_vault_address_off_this_machine_is_warned_about(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path, serving: str
) -> None:
    remote = "http://192.0.2.10:8200"  # TEST-NET-1: never routed, the call fails after its timeout
    vault = vault_helper(request, installation, serving, VAULT_ADDR=remote)
    config = Path(vault.env["CREDBRIDGE_CONFIG"])
    config.write_text(config.read_text() + "  timeout: 1\n")
    result = vault.get("registry.example.com")
    warning = one_line(result.stderr)
    assert "warning" in warning and remote in warning and "https://" in warning, warning
    assert result.returncode == 1 and remote in one_line(result.stdout)


# -- docker-credential-vault behind a private CA ---------------------------------------------------


@pytest.fixture(scope="session")
def tls_vault(tmp_path_factory: pytest.TempPathFactory) -> openbao.DevServer:
    dev = openbao.start_dev_server(tmp_path_factory.mktemp("openbao-tls"), tls=True)
    yield dev
    dev.stop()


def tls_vault_helper(
    request: pytest.FixtureRequest,
    installation: Installation,
    serving: str,
    tls_vault: openbao.DevServer,
    **changes: str,
) -> Helper:
    token = tls_vault.token(openbao.READ_WRITE_POLICY, "credbridge-rw")
    return vault_helper(request, installation, serving, VAULT_ADDR=tls_vault.address, VAULT_TOKEN=token, **changes)


def assert_works_quietly(vault: Helper) -> None:
    stored = vault.store("registry.tls.example", "robot", "s3cret")
    assert (stored.returncode, stored.stdout, stored.stderr) == (0, b"", b""), stored
    got = vault.get("registry.tls.example")
    assert got.returncode == 0 and json.loads(got.stdout)["Secret"] == "s3cret" and got.stderr == b"", got


def test_vault_behind_a_private_ca_works_with_vault_cacert(
    request: pytest.FixtureRequest, installation: Installation, tls_vault: openbao.DevServer, serving: str
) -> None:
    assert_works_quietly(
        tls_vault_helper(request, installation, serving, tls_vault, VAULT_CACERT=str(tls_vault.ca_file))
    )


def test_vault_behind_a_private_ca_works_with_cacert_in_the_config_file(
    request: pytest.FixtureRequest, installation: Installation, tls_vault: openbao.DevServer, serving: str
) -> None:
    vault = tls_vault_helper(request, installation, serving, tls_vault)
    config = Path(vault.env["CREDBRIDGE_CONFIG"])
    config.write_text(config.read_text() + f"  cacert: {tls_vault.ca_file}\n")
    assert_works_quietly(vault)


@pytest.mark.parametrize("cacert", ["/etc/ssl/certs/ca-certificates.crt", None], ids=["wrong-ca", "no-ca"])
def test_vault_behind_a_private_ca_is_refused_without_its_ca(
    request: pytest.FixtureRequest,
    installation: Installation,
    tls_vault: openbao.DevServer,
    serving: str,
    cacert: str | None,
) -> None:
    vault = tls_vault_helper(request, installation, serving, tls_vault, **({"VAULT_CACERT": cacert} if cacert else {}))
    result = vault.store("registry.tls.example", "robot", "s3cret")
    assert (result.returncode, result.stderr) == (1, b""), result
    line = one_line(result.stdout)
    assert tls_vault.address in line and "TLS certificate not trusted: set VAULT_CACERT" in line, line


def test_vault_skip_verify_works_and_warns(
    request: pytest.FixtureRequest, installation: Installation, tls_vault: openbao.DevServer, serving: str
) -> None:
    vault = tls_vault_helper(request, installation, serving, tls_vault, VAULT_SKIP_VERIFY="1")
    for result in (vault.store("registry.tls.example", "robot", "s3cret"), vault.get("registry.tls.example")):
        assert result.returncode == 0, result
        assert "VAULT_SKIP_VERIFY" in one_line(result.stderr)


def test_vault_skip_verify_is_warned_about_when_the_router_sends_a_registry_to_vault(
    request: pytest.FixtureRequest, installation: Installation, tls_vault: openbao.DevServer, serving: str
) -> None:
    vault = tls_vault_helper(request, installation, serving, tls_vault, VAULT_SKIP_VERIFY="1")
    config = Path(vault.env["CREDBRIDGE_CONFIG"])
    config.write_text(config.read_text() + 'routes:\n  "*.tls.example": vault\n')
    router = Helper(installation.executable("docker-credential-credbridge"), vault.env)
    for result in (router.store("registry.tls.example", "robot", "s3cret"), router.get("registry.tls.example")):
        assert result.returncode == 0, result
        assert "VAULT_SKIP_VERIFY" in one_line(result.stderr)
    assert json.loads(vault.get("registry.tls.example").stdout)["Secret"] == "s3cret"


# -- passwords in URLs: planted everywhere, found nowhere --------------------------------------------

PLANTED_REGISTRY = f"https://alice:{PASSWORD}@reg.example.com"


def assert_no_password(*channels: bytes | str) -> None:
    for channel in channels:
        text = channel if isinstance(channel, str) else channel.decode("utf-8", "replace")
        assert PASSWORD not in text, text


@pytest.fixture(params=EVERY_HELPER, ids=helper_id)
def helper(request: pytest.FixtureRequest) -> Helper:
    return build_helper(request, *request.param)


def test_a_password_in_a_server_url_reaches_no_log_and_no_error(helper: Helper, tmp_path: Path) -> None:
    """Answers to get and list carry the ServerURL as given and stored (the protocol); nothing else may."""
    log = tmp_path / "debug.log"
    debugging = with_env(helper, CREDBRIDGE_DEBUG=str(log))
    calls = [
        ("store", store_message(PLANTED_REGISTRY, "alice", "s")),
        ("get", PLANTED_REGISTRY.encode()),
        ("get", f"bob:{PASSWORD}@elsewhere.example".encode()),
        ("list", b""),
        ("erase", PLANTED_REGISTRY.encode()),
        ("erase", PLANTED_REGISTRY.encode()),
        ("store", store_message(f"ftp://bob:{PASSWORD}@", "", "s")),
    ]
    for action, stdin in calls:
        result = debugging(action, stdin=stdin)
        protocol_answer = result.returncode == 0 and action in ("get", "list")
        assert_no_password(result.stderr, b"" if protocol_answer else result.stdout)
    assert log.read_bytes().count(b"done") >= len(calls) - 1
    assert_no_password(log.read_bytes())


@pytest.mark.parametrize("where", ["VAULT_ADDR", "config"])
def test_a_password_in_a_vault_address_reaches_no_log_and_no_error(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path, serving: str, where: str
) -> None:
    log = tmp_path / "debug.log"
    vault = vault_helper(request, installation, serving, CREDBRIDGE_DEBUG=str(log))
    config = Path(vault.env["CREDBRIDGE_CONFIG"])
    for address in (f"http://bob:{PASSWORD}@127.0.0.1:{openbao.free_port()}", f"ftp://bob:{PASSWORD}@vault.example"):
        if where == "VAULT_ADDR":
            planted = with_env(vault, VAULT_ADDR=address)
        else:
            config.write_text(config.read_text().split("  address:")[0] + f"  address: [{address}]\n")
            planted = Helper(vault.path, {name: value for name, value in vault.env.items() if name != "VAULT_ADDR"})
        result = planted.get("registry.example.com")
        assert result.returncode == 1 and "bob:" in result.text, result
        assert_no_password(result.stdout, result.stderr)
    assert_no_password(log.read_bytes())


def test_a_password_in_a_url_reaches_no_command_output(
    request: pytest.FixtureRequest, installation: Installation
) -> None:
    """login, list, config and doctor, with the password in the registry named, a stored key and Vault's address."""
    env = router_env(routed=True)(request, "direct")
    config = Path(env["HOME"]) / ".config" / "credbridge" / "config.yaml"
    config.write_text(config.read_text() + f"vault:\n  address: https://bob:{PASSWORD}@vault.example:8200\n")
    docker_config = Path(env["HOME"]) / ".docker" / "config.json"
    docker_config.parent.mkdir(mode=0o700)
    docker_config.write_text(json.dumps({"auths": {PLANTED_REGISTRY: {"auth": "YWxpY2U6cw=="}}}))
    login = credbridge(
        installation, env, "login", "--no-verify", "--password-stdin", "-u", "alice", PLANTED_REGISTRY, stdin="s\n"
    )
    assert login.returncode == 0 and "alice:" in login.text, login
    outputs = [
        login,
        credbridge(
            installation, env, "login", "--password-stdin", "-u", "alice", f"carol:{PASSWORD}@127.0.0.1:9", stdin="s\n"
        ),
    ]
    outputs += [
        credbridge(installation, env, *command)
        for command in (
            ("list",),
            ("list", "--json"),
            ("config",),
            ("config", "--json"),
            ("doctor",),
            ("doctor", "--json"),
            ("doctor", "--registry", PLANTED_REGISTRY),
            ("logout", PLANTED_REGISTRY),
        )
    ]
    for result in outputs:
        assert b"Traceback" not in result.stderr, result
        assert_no_password(result.stdout, result.stderr)


def test_a_password_in_a_config_value_reaches_no_error(
    request: pytest.FixtureRequest, installation: Installation, serving: str
) -> None:
    """A route pattern is refused, naming the pattern: without its password, by every command and the helper."""
    env = router_env(routed=True)(request, serving)
    config = Path(env["HOME"]) / ".config" / "credbridge" / "config.yaml"
    config.write_text(config.read_text() + f'  "alice:{PASSWORD}@routed.example": keyring\n')
    router = Helper(installation.executable("docker-credential-credbridge"), env)
    outputs = [router.get("routed.example"), router.store("routed.example", "alice", "s")]
    outputs += [
        credbridge(installation, env, *command)
        for command in (("list",), ("config",), ("config", "--json"), ("doctor",), ("doctor", "--json"))
    ]
    for result in outputs:
        assert result.returncode == 1 and "alice:" in (result.stdout + result.stderr).decode(), result
        assert_no_password(result.stdout, result.stderr)


# -- a number too long for Python's int() in a YAML file we read ------------------------------------

HUGE_NUMBER = "7" * 100_000


def assert_names_the_number(result: Result, key: str, path: Path) -> None:
    assert result.returncode == 1, result
    line = one_line(result.stdout or result.stderr)
    assert key in line and str(path) in line and "ValueError" not in line and HUGE_NUMBER[:50] not in line, line


@pytest.mark.parametrize(
    ("added", "key"),
    [
        (f"vault:\n  mount: {HUGE_NUMBER}\n", "vault.mount"),
        (f'  "alice:{PASSWORD}@huge.example": {HUGE_NUMBER}\n', "routes.alice:"),
    ],
)
def test_a_huge_number_in_the_config_file_is_one_line_naming_its_key(
    request: pytest.FixtureRequest, installation: Installation, added: str, key: str
) -> None:
    """Python refuses int() of more than 4300 digits; the YAML loader's ValueError must not escape as such,
    and a key naming it shows no password."""
    env = router_env(routed=True)(request, "direct")
    config = Path(env["HOME"]) / ".config" / "credbridge" / "config.yaml"
    config.write_text(config.read_text() + added)
    router = Helper(installation.executable("docker-credential-credbridge"), env)
    results = [
        router.get("routed.example"),
        *(credbridge(installation, env, command) for command in ("config", "list")),
    ]
    for result in results:
        assert_names_the_number(result, key, config)
    doctor = credbridge(installation, env, "doctor")
    assert doctor.returncode == 1 and "ValueError" not in doctor.text, doctor
    assert any(key in line and str(config) in line for line in doctor.text.splitlines()), doctor
    assert_no_password(*(result.stdout + result.stderr for result in results), doctor.text)


def test_a_huge_number_in_remote_yaml_is_one_line_naming_its_key(request: pytest.FixtureRequest) -> None:
    apptainer = build_helper(request, "apptainer", "direct")
    remote_yaml = Path(apptainer.env["HOME"]) / ".apptainer" / "remote.yaml"
    remote_yaml.parent.mkdir(mode=0o700, exist_ok=True)
    remote_yaml.write_text(f"Active: DefaultRemote\nRemotes:\n  DefaultRemote:\n    URI: {HUGE_NUMBER}\n")
    for result in (apptainer.get("registry.example"), apptainer("list")):
        assert_names_the_number(result, "Remotes.DefaultRemote.URI", remote_yaml)
