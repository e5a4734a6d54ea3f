"""Running a helper executable the way docker and podman do: argv, stdin, env; nothing else."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Mapping, Sequence

HELPER_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Result:
    stdout: bytes
    stderr: bytes
    returncode: int

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


def run(
    argv: Sequence[str],
    stdin: bytes | str = b"",
    env: Mapping[str, str] | None = None,
    timeout: float = HELPER_TIMEOUT_SECONDS,
) -> Result:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        list(argv),
        input=data,
        capture_output=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=False,
    )
    return Result(done.stdout, done.stderr, done.returncode)
