"""Judge Apptainer/SingularityCE files with the Go decoders those programs use.

Neither program is packaged in Debian, so tests/support/strictload/main.go
mirrors their schema and decoding (yaml.v3 KnownFields and yaml.v2
UnmarshalStrict for remote.yaml, docker/cli LoadFromReader for the
docker-config authfile); see its header for the upstream files mirrored.
It is built offline from Debian's Go packages, once per test session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SOURCE = Path(__file__).resolve().parent / "strictload"
DEBIAN_GOPATH = "/usr/share/gocode"
INSTALL_HINT = (
    "install the Go toolchain and YAML packages: "
    "apt-get install golang-go golang-gopkg-yaml.v2-dev golang-gopkg-yaml.v3-dev "
    "(tests/system-deps does it)"
)
LOAD_TIMEOUT_SECONDS = 30
BUILD_TIMEOUT_SECONDS = 300

# apptainer is the stricter schema (it has no Remotes.<name>.Insecure), so it is the default.
Flavour = Literal["apptainer", "singularityce"]


@dataclass(frozen=True)
class StrictLoader:
    """Loads a file as Apptainer/SingularityCE would; AssertionError when they would refuse it."""

    binary: Path

    def remote_yaml(self, path: Path | str, flavour: Flavour = "apptainer") -> dict[str, Any]:
        """remote.Config as both YAML eras of `flavour` decode it (Active, Remotes, Credentials)."""
        return self._load("remote-yaml", "-flavour", flavour, str(path))

    def docker_config(self, path: Path | str) -> dict[str, Any]:
        """docker/cli ConfigFile after LoadFromReader: auths carry decoded username/password."""
        return self._load("docker-config", str(path))

    def _load(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=LOAD_TIMEOUT_SECONDS, check=False
        )
        assert done.returncode == 0, f"strictload {' '.join(args)} refused the file: {done.stderr.strip()}"
        loaded: dict[str, Any] = json.loads(done.stdout)
        return loaded


def build(workdir: Path) -> StrictLoader:
    """Compile strictload in GOPATH mode against Debian's packages: no network, no modules."""
    go = shutil.which("go")
    assert go, f"`go` is not on PATH: {INSTALL_HINT}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "GO111MODULE": "off",
        "GOPATH": DEBIAN_GOPATH,
        "GOCACHE": str(workdir / "gocache"),
        "GOENV": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    binary = workdir / "strictload"
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"building strictload failed ({INSTALL_HINT}):\n{done.stderr}"
    return loader(workdir)


def loader(workdir: Path) -> StrictLoader:
    """The loader that `build(workdir)` compiled."""
    return StrictLoader(workdir / "strictload")
