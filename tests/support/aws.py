"""Amazon ECR emulated on loopback for the real `docker-credential-ecr-login`.

Debian's ecr-login (0.6.0, aws-sdk-go-v2 1.17) has no endpoint setting (no AWS_ENDPOINT_URL*):
it always calls https://api.ecr.<region>.amazonaws.com, derived from the registry's host name.
It does honour HTTPS_PROXY and AWS_CA_BUNDLE, so it reaches moto's server (a separate process)
through a loopback proxy of ours that terminates TLS with a private CA, counts every
GetAuthorizationToken it forwards (per access key), and refuses every other host and all plain
HTTP (HTTP_PROXY points there too; IMDS is off): no real AWS is reachable.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.openbao import free_port, wait_until

REGION = "us-east-1"
#: moto's default account: the registry whose token moto mints as "<account>-auth-token".
ACCOUNT = "123456789012"
PROFILES = ("first", "second")
CA_NAME = "credbridge test CA"
TOKEN_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
#: ECR Public's API, which moto lacks: ecr-login's `list` asks it for a token after ECR's.
PUBLIC_HOST = "api.ecr-public.us-east-1.amazonaws.com"
#: What AWS answers a principal without ECR Public permissions: one round trip, not retried.
PUBLIC_REFUSAL = (
    b'{"__type":"AccessDeniedException","message":"not authorized to perform ecr-public:GetAuthorizationToken"}'
)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length"}


def registry_host(account: str = ACCOUNT, region: str = REGION) -> str:
    """The host shape ecr-login accepts: it takes the registry id and region from it."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def _write_private(path: Path, data: bytes) -> Path:
    path.touch(mode=0o600)
    path.write_bytes(data)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, is_ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if not is_ca:
        names = [x509.DNSName(subject), x509.DNSName(PUBLIC_HOST)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _tls_for(host: str, directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA (its PEM for AWS_CA_BUNDLE) and a server context for `host`."""
    directory.mkdir(mode=0o700)
    ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    ca = _certificate(CA_NAME, ca_key, CA_NAME, ca_key, is_ca=True)
    leaf = _certificate(host, leaf_key, CA_NAME, ca_key, is_ca=False)
    pem = serialization.Encoding.PEM
    ca_file = _write_private(directory / "ca.pem", ca.public_bytes(pem))
    leaf_file = _write_private(directory / "server.pem", leaf.public_bytes(pem))
    key_file = _write_private(
        directory / "server.key",
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf_file, key_file)
    return ca_file, context


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, host: str, tls: ssl.SSLContext, moto_port: int, upstream_delay: float, token_lifetime: Optional[float]
    ) -> None:
        super().__init__(("127.0.0.1", 0), _InterceptingProxy)
        self.emulated_host, self.tls, self.moto_port = host, tls, moto_port
        self.upstream_delay, self.token_lifetime = upstream_delay, token_lifetime
        self.token_calls: Counter[str] = Counter()
        self.public_calls = 0
        self.lock = threading.Lock()

    def count(self, access_key: str) -> None:
        with self.lock:
            self.token_calls[access_key] += 1


class _InterceptingProxy(http.server.BaseHTTPRequestHandler):
    """CONNECT to the emulated host becomes TLS with our CA; its requests go on to moto."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the count is the record."""

    def do_CONNECT(self) -> None:
        if self.path.rpartition(":")[0] not in (self.server.emulated_host, PUBLIC_HOST):
            self.send_error(403, "only the emulated ECR endpoint is reachable here")
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb", self.rbufsize)
        self.wfile = self.connection.makefile("wb")  # buffered: a response leaves in one TLS write

    def do_POST(self) -> None:
        if not self.path.startswith("/"):
            self.send_error(403, "plain HTTP through this proxy goes nowhere")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Host", "").partition(":")[0] == PUBLIC_HOST:
            self._refuse_public()
            return
        is_token_call = self.headers.get("X-Amz-Target") == TOKEN_TARGET
        if is_token_call:
            credential = self.headers.get("Authorization", "").partition("Credential=")[2]
            self.server.count(credential.partition("/")[0])
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if self.server.upstream_delay:
            time.sleep(self.server.upstream_delay)  # an emulated network round trip (benchmarks only)
        moto = http.client.HTTPConnection("127.0.0.1", self.server.moto_port, timeout=30)
        try:
            moto.request(self.command, self.path, body, headers)
            answer = moto.getresponse()
            payload = answer.read()
        finally:
            moto.close()
        if is_token_call and answer.status == 200 and self.server.token_lifetime is not None:
            payload = _expiring_in(payload, self.server.token_lifetime)
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST

    def _refuse_public(self) -> None:
        """As AWS answers a caller without ECR Public access (moto has no ECR Public): without an answer
        ecr-login's `list` retried the refused connection for seconds (every build's first call)."""
        with self.server.lock:
            self.server.public_calls += 1
        if self.server.upstream_delay:
            time.sleep(self.server.upstream_delay)
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(PUBLIC_REFUSAL)))
        self.end_headers()
        self.wfile.write(PUBLIC_REFUSAL)


def _expiring_in(payload: bytes, seconds: float) -> bytes:
    """moto's GetAuthorizationToken answer with each token's expiresAt `seconds` from now, as real ECR
    says (moto's is fixed in 2015, so ecr-login's own file cache never serves it)."""
    answer = json.loads(payload)
    for data in answer.get("authorizationData", []):
        data["expiresAt"] = int(time.time() + seconds)
    return json.dumps(answer).encode()


@dataclass
class EcrEmulation:
    """What a test needs: ecr-login's environment per profile, the registry, the real call count."""

    registry: str
    home: Path
    access_keys: dict[str, str]
    base_env: dict[str, str] = field(repr=False)
    moto: subprocess.Popen = field(repr=False)
    proxy: _ProxyServer = field(repr=False)

    def env(self, profile: str = PROFILES[0]) -> dict[str, str]:
        """ecr-login's whole environment: private HOME, AWS_PROFILE, only loopback reachable; no
        AWS_ECR_CACHE_DIR, so its token file is where a user's is by default (~/.ecr/cache.json)."""
        assert profile in self.access_keys, f"unknown profile {profile}"
        return {**self.base_env, "AWS_PROFILE": profile}

    def token_calls(self, profile: str | None = None) -> int:
        """GetAuthorizationToken calls moto received (signed with `profile`'s key, or any)."""
        with self.proxy.lock:
            if profile is None:
                return sum(self.proxy.token_calls.values())
            return self.proxy.token_calls[self.access_keys[profile]]

    def public_calls(self) -> int:
        """Requests that reached ECR Public (each refused, as for a caller without access)."""
        with self.proxy.lock:
            return self.proxy.public_calls

    def stop(self) -> None:
        self.proxy.shutdown()
        self.proxy.server_close()
        if self.moto.poll() is None:
            os.killpg(self.moto.pid, signal.SIGTERM)
            try:
                self.moto.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.moto.pid, signal.SIGKILL)
                self.moto.wait()


def _moto_server(workdir: Path) -> tuple[subprocess.Popen, int]:
    executable = Path(sys.executable).parent / "moto_server"
    assert executable.exists(), "moto is not installed: pip install 'moto[server]' (test extra)"
    port = free_port()
    log = open(workdir / "moto.log", "wb")
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(workdir)},
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()

    def answers() -> bool:
        assert process.poll() is None, (workdir / "moto.log").read_text(errors="replace")
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            probe.request("GET", "/moto-api/data.json")
            return probe.getresponse().status == 200
        finally:
            probe.close()

    try:
        wait_until(answers, "moto_server answering")
    except AssertionError:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return process, port


def _aws_files(home: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """Two profiles with their own (fake) access keys, in files only this HOME has."""
    keys = {profile: "AKIA" + secrets.token_hex(8).upper() for profile in PROFILES}
    config = "".join(f"[profile {p}]\nregion = {REGION}\n" for p in PROFILES)
    credentials = "".join(
        f"[{p}]\naws_access_key_id = {key}\naws_secret_access_key = {secrets.token_hex(20)}\n"
        for p, key in keys.items()
    )
    aws = home / ".aws"
    aws.mkdir(mode=0o700)
    files = {
        "AWS_CONFIG_FILE": _write_private(aws / "config", config.encode()),
        "AWS_SHARED_CREDENTIALS_FILE": _write_private(aws / "credentials", credentials.encode()),
    }
    return keys, files


def start_ecr_emulation(
    workdir: Path, upstream_delay: float = 0.0, token_lifetime: Optional[float] = None
) -> EcrEmulation:
    """moto + counting proxy on 127.0.0.1; call `stop()` (or use the `ecr` fixture).

    `upstream_delay` (seconds) holds each request before moto sees it: the network a real AWS
    endpoint is behind, which loopback lacks (bench/bench_tokencache.py --aws-rtt-ms). With
    `token_lifetime` (seconds; real ECR: 12 h) tokens expire then instead of moto's 2015."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(mode=0o700)
    keys, files = _aws_files(home)
    ca_file, tls = _tls_for(f"api.ecr.{REGION}.amazonaws.com", workdir / "tls")
    moto, moto_port = _moto_server(workdir)
    proxy = _ProxyServer(f"api.ecr.{REGION}.amazonaws.com", tls, moto_port, upstream_delay, token_lifetime)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        **{k: str(v) for k, v in files.items()},
        "HTTPS_PROXY": proxy_url,
        "HTTP_PROXY": proxy_url,
        "AWS_CA_BUNDLE": str(ca_file),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return EcrEmulation(registry_host(), home, keys, env, moto, proxy)


@pytest.fixture
def ecr(tmp_path: Path) -> Iterator[EcrEmulation]:
    """A fresh emulation per test (import this name into a test module to use it)."""
    assert shutil.which("docker-credential-ecr-login"), (
        "ecr-login is not installed (apt install amazon-ecr-credential-helper)"
    )
    emulation = start_ecr_emulation(tmp_path / "ecr")
    try:
        yield emulation
    finally:
        emulation.stop()
