"""A real `pass` password store for Go's docker-credential-pass: a GnuPG key and `pass init`."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.support.process import run

GO_PASS = "/usr/bin/docker-credential-pass"


@contextmanager
def pass_store(env: dict[str, str], directory: Path) -> Iterator[dict[str, str]]:
    """`env` with GNUPGHOME and PASSWORD_STORE_DIR in `directory`: a key without passphrase (no
    pinentry prompt), `pass init`, and the entry Go's helper looks for; gpg-agent stopped after."""
    for executable in (GO_PASS, "/usr/bin/pass", "/usr/bin/gpg"):
        assert os.access(executable, os.X_OK), (
            f"{executable} missing: apt install pass gnupg golang-docker-credential-helpers"
        )
    gnupg = directory / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**env, "GNUPGHOME": str(gnupg), "PASSWORD_STORE_DIR": str(directory / "password-store")}

    def run_ok(*argv: str, stdin: str = "") -> str:
        done = run(argv, stdin, env, timeout=120)
        assert done.returncode == 0, (done.stdout + done.stderr).decode()
        return done.text

    try:
        run_ok(
            "gpg",
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "credbridge test <test@credbridge.invalid>",
            "default",
            "default",
            "never",
        )
        fingerprint = next(
            line.split(":")[9]
            for line in run_ok("gpg", "--list-keys", "--with-colons").splitlines()
            if line.startswith("fpr:")
        )
        run_ok("pass", "init", fingerprint)
        run_ok(
            "pass",
            "insert",
            "--echo",
            "docker-credential-helpers/docker-pass-initialized-check",
            stdin="pass is initialized\n",
        )
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, timeout=30)
