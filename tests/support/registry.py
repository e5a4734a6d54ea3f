"""A local, password-protected Docker registry (distribution 2.8) for tests.

Why: credential helpers only matter when a real client (skopeo, podman,
docker) has to authenticate; this gives them a registry on 127.0.0.1 with
htpasswd basic auth and one tiny image, with no network access beyond
loopback.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

REGISTRY_BIN = "/usr/bin/docker-registry"
TEST_REPO = "test/hello"
TEST_TAG = "latest"


@dataclass
class Registry:
    """A running registry; ``host`` is "127.0.0.1:PORT" (plain HTTP)."""

    host: str
    username: str
    password: str
    pid: int
    workdir: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def test_image(self) -> str:
        """Reference of the image pushed by push_test_image()."""
        return f"{self.host}/{TEST_REPO}:{TEST_TAG}"

    def stop(self) -> None:
        """Kill the registry by PID and reap it; safe to call repeatedly."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def push_test_image(self, env: Mapping[str, str] | None = None) -> str:
        """Copy a tiny OCI image to ``HOST/test/hello:latest``; return the reference.

        Credentials go through a 0600 auth file, not argv, so the password
        never shows up in ``ps``.  ``env`` should be a complete, clean
        environment (e.g. PrivateKeyring.env); default: PATH + HOME=workdir.
        """
        layout = build_oci_layout(self.workdir / "oci-hello")
        authfile = self.workdir / "push-auth.json"
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        authfile.touch(mode=0o600)
        authfile.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        env = dict(env) if env is not None else _clean_env(self.workdir)
        argv = [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"--dest-authfile={authfile}",
            f"oci:{layout}:{TEST_TAG}",
            f"docker://{self.test_image}",
        ]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        except FileNotFoundError as e:
            raise RuntimeError("required program not installed: skopeo") from e
        finally:
            authfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise RuntimeError(f"skopeo copy failed ({res.returncode}): {res.stderr.strip()}")
        return self.test_image

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_registry(
    workdir: Path,
    username: str = "alice",
    password: str | None = None,
    timeout: float = 15.0,
    authenticated: bool = True,
) -> Registry:
    """Start docker-registry with htpasswd auth (or, not `authenticated`, open to all) on a free loopback port.

    Returns once ``GET /v2/`` answers 401 (200 when open); raises RuntimeError otherwise.
    """
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(16)
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(_bcrypt_line(username, password))
    port = free_port()
    # JSON is valid YAML, and spares us quoting rules for paths.
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if authenticated:
        config["auth"] = {"htpasswd": {"realm": "credbridge-test", "path": str(htpasswd)}}
    (workdir / "config.yml").write_text(json.dumps(config, indent=2))
    log_path = workdir / "registry.log"
    # A clean env matters: REGISTRY_* variables would override config.yml.
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(workdir / "config.yml")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env(workdir),
                cwd=workdir,
            )
        except FileNotFoundError as e:
            raise RuntimeError(f"required program not installed: {REGISTRY_BIN}") from e
    reg = Registry(f"127.0.0.1:{port}", username, password, proc.pid, workdir, proc)
    try:
        _wait_for(401 if authenticated else 200, reg, proc, log_path, timeout)
    except BaseException:
        reg.stop()
        raise
    return reg


def free_port() -> int:
    """Ask the kernel for a free loopback port (tiny race until the registry binds)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_oci_layout(path: Path) -> Path:
    """Write a minimal, reproducible OCI image layout with one small layer."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    content = b"hello from credbridge tests\n"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        tar.addfile(info, io.BytesIO(content))
    layer_tar = raw.getvalue()
    layer = blob(gzip.compress(layer_tar, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
    config = blob(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/hello.txt"]},
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
            },
            sort_keys=True,
        ).encode(),
        "application/vnd.oci.image.config.v1+json",
    )
    manifest = blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config,
                "layers": [layer],
            },
            sort_keys=True,
        ).encode(),
        "application/vnd.oci.image.manifest.v1+json",
    )
    manifest["annotations"] = {"org.opencontainers.image.ref.name": TEST_TAG}
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    return path


def _bcrypt_line(username: str, password: str) -> str:
    """htpasswd -iBn reads the password from stdin, keeping it out of argv."""
    try:
        res = subprocess.run(["htpasswd", "-iBn", username], input=password, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        raise RuntimeError("required program not installed: htpasswd (apache2-utils)") from e
    line = res.stdout.strip()
    if res.returncode != 0 or not line.startswith(f"{username}:$2"):
        raise RuntimeError(f"htpasswd failed ({res.returncode}): {res.stderr.strip()}")
    return line + "\n"


def _wait_for(status: int, reg: Registry, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll /v2/ without any proxy until the registry answers `status` (401: it demands authentication)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
            )
        try:
            with opener.open(f"http://{reg.host}/v2/", timeout=2) as resp:
                if resp.status == status:
                    return
                last = f"HTTP {resp.status} (expected {status})"
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == status:
                return
            last = f"HTTP {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(
        f"registry on {reg.host} not answering {status} after {timeout}s: {last}; "
        f"log: {log.read_text(errors='replace')[-2000:]}"
    )


def _clean_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


# -- scripted loopback HTTP servers that record what they receive (redirect and credential-leak tests) --------

#: answer(method, path, headers) -> (status, response headers, body); headers' names in lower case.
Answer = Callable[[str, str, Mapping[str, str]], "tuple[int, dict[str, str], bytes]"]


@dataclass
class RecordingServer:
    """An HTTP server on one loopback address: answers from a script, remembers every request's headers."""

    url: str
    received: list[tuple[str, str, dict[str, str]]]

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name` that reached this server: what an attacker listening here holds."""
        return [headers[name.lower()] for _method, _path, headers in self.received if name.lower() in headers]


@contextmanager
def recording_server(host: str, answer: Answer, tls: ssl.SSLContext | None = None) -> Iterator[RecordingServer]:
    """Serve `answer` on http://host:<free port> (https:// with `tls`) in a thread; stopped when the block ends."""
    received: list[tuple[str, str, dict[str, str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            self.rfile.read(int(headers.get("content-length") or 0))
            received.append((self.command, self.path, headers))
            status, reply_headers, body = answer(self.command, self.path, headers)
            self.send_response(status)
            for name, value in {**reply_headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RecordingServer(f"{'https' if tls else 'http'}://{host}:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()


def redirecting_to(target: str, status: int = 302) -> Answer:
    """Every request sent on to the same path at `target` (an origin: scheme://host:port)."""
    return lambda _method, path, _headers: (status, {"Location": target + path}, b"")
