"""Calling a helper under test as a client does: argv, stdin, environment in; exit code, output out.

Each call runs in a session of its own, ended whole when the caller gives up (a timeout, Ctrl-C),
so a wedged helper leaves nothing running behind the checks.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Optional, Sequence

from credbridge.helperclient import end_process_group


@dataclass(frozen=True)
class HelperCommand:
    """How to run the helper: `argv` (the action is appended) in `env` (None: this process's)."""

    argv: Sequence[str]
    env: Optional[dict[str, str]] = None


@dataclass(frozen=True)
class Answer:
    exit_code: int
    stdout: bytes
    stderr: bytes


class CallTimedOut(AssertionError):
    """The helper did not answer in time: a check fails, the checks go on."""


def call(command: HelperCommand, args: Sequence[str], stdin: Optional[bytes], timeout: float) -> Answer:
    """One helper call; `stdin` None leaves stdin open and unwritten, as docker-py does for list."""
    read_end, write_end = os.pipe() if stdin is None else (subprocess.PIPE, None)
    try:
        process = subprocess.Popen(
            [*command.argv, *args],
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=command.env,
            start_new_session=True,
        )
    except BaseException:
        if write_end is not None:
            os.close(write_end)
        raise
    finally:
        if stdin is None:
            os.close(read_end)
    with process:
        try:
            stdout, stderr = process.communicate(stdin, timeout=timeout)
        except BaseException as error:
            end_process_group(process)
            if isinstance(error, subprocess.TimeoutExpired):
                raise CallTimedOut(f"`{' '.join(args)}` did not answer within {timeout:g} seconds") from None
            raise
        finally:
            if write_end is not None:
                os.close(write_end)
    return Answer(process.returncode, stdout, stderr)
