"""docker-credential-vault against real OpenBao servers: sharing, policies, logins, failures, HA.

The store contract (tests/contract/test_store_contract.py) covers the four operations;
here: what a team, a cluster and a CI fleet rely on beyond them.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import SERVING, Helper, Installation, vault_env
from tests.support import openbao

NOT_FOUND = b"credentials not found in native keychain\n"
#: An unreachable or silent Vault must be reported within this many seconds, never waited on.
ERROR_BOUND_SECONDS = 8


@pytest.fixture(params=SERVING)
def serving(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def vault(request: pytest.FixtureRequest, installation: Installation, serving: str) -> Helper:
    """docker-credential-vault for one user (own HOME and token), with a prefix of its own."""
    return Helper(installation.executable("docker-credential-vault"), vault_env(request, serving))


def other_home(helper: Helper, tmp_path: Path, name: str, token: str | None = None, **env: str) -> Helper:
    """The same helper and prefix for another person or machine: another HOME, holding `token` in ~/.vault-token."""
    home = tmp_path / name
    home.mkdir(mode=0o700)
    if token is not None:
        (home / ".vault-token").touch(mode=0o600)
        (home / ".vault-token").write_text(token)
    return Helper(helper.path, {**helper.env, "HOME": str(home), **env})


def one_error_line(result, *needles: str) -> str:
    """Exit 1, one line on stdout, nothing on stderr, every needle in it."""
    assert result.returncode == 1, result
    assert result.stderr == b"" and result.stdout.endswith(b"\n") and result.stdout.count(b"\n") == 1, result
    line = result.text
    for needle in needles:
        assert needle in line, line
    return line


def stored(helper: Helper, server: str, username: str, secret: str) -> None:
    result = helper.store(server, username, secret)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result


def test_a_credential_stored_on_one_machine_is_found_on_another(
    vault: Helper, tmp_path: Path, vault_server: openbao.DevServer
) -> None:
    other = other_home(vault, tmp_path, "machine-b", vault_server.token(openbao.READ_WRITE_POLICY, "credbridge-rw"))
    stored(vault, "registry.team.example", "robot", "team-secret")
    assert json.loads(other.get("registry.team.example").stdout)["Secret"] == "team-secret"
    assert json.loads(other.list().stdout) == {"registry.team.example": "robot"}
    assert other.erase("https://registry.team.example/").returncode == 0
    assert vault.get("registry.team.example").stdout == NOT_FOUND


def test_secrets_live_at_one_readable_path_per_registry(vault: Helper, vault_server: openbao.DevServer) -> None:
    """A policy names a registry by path: the canonical name, escaped into one segment."""
    stored(vault, "https://Registry.Example.com:5000/team/", "alice", "s3cret")
    prefix = Path(vault.env["CREDBRIDGE_CONFIG"]).read_text().split("prefix: ")[1].strip()
    secret = vault_server.admin().secrets.kv.v2.read_secret_version(
        prefix + "registry.example.com_3a5000_2fteam", mount_point="secret", raise_on_deleted_version=True
    )
    assert secret["data"]["data"] == {
        "https://Registry.Example.com:5000/team/": {"Username": "alice", "Secret": "s3cret"}
    }


def test_erase_leaves_no_old_version_readable(vault: Helper, vault_server: openbao.DevServer) -> None:
    stored(vault, "registry.example.com", "alice", "first")
    stored(vault, "registry.example.com", "alice", "second")
    assert vault.erase("registry.example.com").returncode == 0
    prefix = Path(vault.env["CREDBRIDGE_CONFIG"]).read_text().split("prefix: ")[1].strip()
    import hvac.exceptions

    with pytest.raises(hvac.exceptions.InvalidPath):
        vault_server.admin().secrets.kv.v2.read_secret_metadata(prefix + "registry.example.com", mount_point="secret")


def test_a_read_only_token_gets_a_permission_error_on_store_and_can_still_get(
    vault: Helper, tmp_path: Path, vault_server: openbao.DevServer
) -> None:
    reader_token = vault_server.token(openbao.READ_ONLY_POLICY, "credbridge-ro")
    reader = other_home(vault, tmp_path, "reader", reader_token)
    stored(vault, "registry.example.com", "alice", "s3cret")
    result = reader.store("registry.example.com", "mallory", "nope")
    line = one_error_line(
        result, "permission denied on secret/data/credbridge/", "/registry.example.com", '"create", "update"'
    )
    assert reader_token not in line and "nope" not in line
    assert json.loads(reader.get("registry.example.com").stdout)["Secret"] == "s3cret"


def test_an_invalid_token_is_named_by_its_source_never_shown(vault: Helper) -> None:
    bad = Helper(vault.path, {**vault.env, "VAULT_TOKEN": "s.not-a-real-token-0123456789"})
    line = one_error_line(bad.get("registry.example.com"), "the Vault token from VAULT_TOKEN is invalid or expired")
    assert "not-a-real-token" not in line


def test_no_token_anywhere_says_how_to_get_one(vault: Helper, tmp_path: Path) -> None:
    one_error_line(other_home(vault, tmp_path, "nobody").get("registry.example.com"), "no Vault token", "VAULT_TOKEN")


def test_an_unreachable_vault_is_one_line_naming_the_address_within_seconds(vault: Helper) -> None:
    address = f"http://127.0.0.1:{openbao.free_port()}"
    started = time.monotonic()
    result = Helper(vault.path, {**vault.env, "VAULT_ADDR": address}).get("registry.example.com")
    assert time.monotonic() - started < ERROR_BOUND_SECONDS
    one_error_line(result, address, "connection refused")


def test_a_vault_that_never_answers_is_given_up_after_the_timeout(vault: Helper, tmp_path: Path) -> None:
    """A wedged server accepts the connection and says nothing: the call must not hang with it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = tmp_path / "timeout.yaml"
        config.write_text(Path(vault.env["CREDBRIDGE_CONFIG"]).read_text() + "  timeout: 1.5\n")
        started = time.monotonic()
        result = Helper(vault.path, {**vault.env, "VAULT_ADDR": address, "CREDBRIDGE_CONFIG": str(config)}).get(
            "x.example"
        )
        assert time.monotonic() - started < ERROR_BOUND_SECONDS
    one_error_line(result, address, "no answer within the timeout")


def test_a_sealed_vault_says_so(installation: Installation, vault: Helper, tmp_path: Path) -> None:
    dev = openbao.start_dev_server(tmp_path / "sealed-server")
    try:
        token = dev.token(openbao.READ_WRITE_POLICY, "credbridge-rw")
        dev.admin().sys.seal()
        result = Helper(vault.path, {**vault.env, "VAULT_ADDR": dev.address, "VAULT_TOKEN": token}).get("x.example")
    finally:
        dev.stop()
    one_error_line(result, "Vault is sealed at " + dev.address, "unseal")


def home_logging_in(vault: Helper, tmp_path: Path, name: str, auth: str) -> Helper:
    """Another machine whose config file's `vault:` section logs in with `auth` instead of a token file."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(Path(vault.env["CREDBRIDGE_CONFIG"]).read_text() + f"  auth: {auth}\n")
    return other_home(vault, tmp_path, name, CREDBRIDGE_CONFIG=str(config))


def assert_stores_and_gets(helper: Helper, server: str) -> None:
    stored(helper, server, "robot", "s3cret")
    assert json.loads(helper.get(server).stdout)["Secret"] == "s3cret"


def test_an_approle_login_from_the_config_file_stores_and_gets(
    vault: Helper, tmp_path: Path, vault_server: openbao.DevServer
) -> None:
    secret_id_file = tmp_path / "secret-id"
    role_id = openbao.enable_approle(vault_server, "credbridge-rw", secret_id_file)
    batch_job = home_logging_in(
        vault, tmp_path, "batch-node", f"{{method: approle, role_id: {role_id}, secret_id_file: {secret_id_file}}}"
    )
    assert_stores_and_gets(batch_job, "registry.hpc.example")
    secret_id_file.write_text("wrong-secret-id\n")
    line = one_error_line(
        Helper(batch_job.path, {**batch_job.env, "CREDBRIDGE_NO_AGENT": "1"}).get("registry.hpc.example"),
        "approle login at auth/approle was refused",
        "secret_id_file",
    )
    assert "wrong-secret-id" not in line


def test_a_jwt_login_with_a_ci_token_file_stores_and_gets(
    vault: Helper, tmp_path: Path, vault_server: openbao.DevServer
) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    openbao.enable_jwt(vault_server, "credbridge-rw", public_pem, audience="credbridge-tests")

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    signing_input = (
        b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        + "."
        + b64(
            json.dumps(
                {"sub": "ci-job-42", "aud": "credbridge-tests", "iat": now, "nbf": now - 5, "exp": now + 600}
            ).encode()
        )
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    jwt_file = tmp_path / "ci.jwt"
    jwt_file.touch(mode=0o600)
    jwt_file.write_text(signing_input + "." + b64(signature) + "\n")
    assert_stores_and_gets(
        home_logging_in(vault, tmp_path, "ci-runner", f"{{method: jwt, role: ci, jwt_file: {jwt_file}}}"),
        "registry.ci.example",
    )


def test_list_of_hundreds_of_registries_is_answered_from_the_index(
    vault: Helper, vault_server: openbao.DevServer
) -> None:
    """300 logins written straight into Vault by the store's own code path would take minutes through
    the helper; the helper writes a few, the rest are written like it (data + index) over the API."""
    stored(vault, "registry-0.example", "user0", "s")
    prefix = Path(vault.env["CREDBRIDGE_CONFIG"]).read_text().split("prefix: ")[1].strip()
    admin = vault_server.admin()
    for number in range(1, 300):
        server = f"registry-{number}.example"
        written = admin.secrets.kv.v2.create_or_update_secret(
            prefix + server, {server: {"Username": f"user{number}", "Secret": "s"}}, mount_point="secret"
        )
        if number % 2:  # half without an index (written by another tool): list reads those
            admin.adapter.post(
                f"/v1/secret/metadata/{prefix}{server}",
                json={
                    "custom_metadata": {
                        "credbridge-usernames": json.dumps(
                            {"version": written["data"]["version"], "usernames": {server: f"user{number}"}}
                        )
                    }
                },
            )
    started = time.monotonic()
    listed = vault.list()
    elapsed = time.monotonic() - started
    assert json.loads(listed.stdout) == {f"registry-{number}.example": f"user{number}" for number in range(300)}
    assert elapsed < 10, elapsed


def test_a_stale_index_is_not_believed(vault: Helper, vault_server: openbao.DevServer) -> None:
    """Another tool rewrote the secret after our index was written: list must read the data."""
    stored(vault, "registry.example.com", "alice", "s")
    prefix = Path(vault.env["CREDBRIDGE_CONFIG"]).read_text().split("prefix: ")[1].strip()
    vault_server.admin().secrets.kv.v2.create_or_update_secret(
        prefix + "registry.example.com",
        {"registry.example.com": {"Username": "bob", "Secret": "t"}},
        mount_point="secret",
    )
    assert json.loads(vault.list().stdout) == {"registry.example.com": "bob"}


def test_get_keeps_answering_when_the_active_node_of_a_raft_cluster_dies(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path
) -> None:
    cluster = openbao.start_raft_cluster(tmp_path / "raft")
    request.addfinalizer(cluster.stop)
    helpers = {}
    for serving in SERVING:
        env = vault_env(request, serving) if not helpers else {**next(iter(helpers.values())).env}
        env.update({"VAULT_ADDR": ",".join(cluster.addresses), "VAULT_TOKEN": cluster.root_token})
        if serving == "direct":
            env["CREDBRIDGE_NO_AGENT"] = "1"
        helpers[serving] = Helper(installation.executable("docker-credential-vault"), env)
    stored(helpers["agent"], "registry.cluster.example", "robot", "s3cret")
    cluster.active_node().kill()
    for serving, helper in helpers.items():
        started = time.monotonic()
        result = helper.get("registry.cluster.example")
        assert result.returncode == 0, (serving, result)
        assert json.loads(result.stdout)["Secret"] == "s3cret"
        assert time.monotonic() - started < 15, serving
    assert cluster.active_node().process.poll() is None
