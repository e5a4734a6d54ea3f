"""Running one command in the foreground like a shell does, so that its wrapper can clean up after.

Signals are blocked before the command starts and taken with sigwaitinfo, so exec outlives its
command and passes on only what the terminal did not send (docs/design.md, "authfile and exec").
"""

from __future__ import annotations

import os
import signal
from typing import Mapping, Sequence

from credbridge.errors import HelperError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
#: Signals a terminal sends to its whole foreground process group.
FROM_TERMINAL = (signal.SIGINT, signal.SIGQUIT)
#: si_code of a signal the kernel raised itself, such as the terminal's Ctrl-C (<asm-generic/siginfo.h>).
SI_KERNEL = 0x80


class CommandNotRun(HelperError):
    """The command could not start; `status` is what a shell would exit with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def block_signals() -> None:
    """Call before creating anything the command's end must remove: from here on no signal kills us."""
    if not hasattr(signal, "sigwaitinfo"):
        raise HelperError("exec needs a system with sigwaitinfo (Linux)")
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # an inherited SIG_IGN would reap the command for us, status lost
    signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED, signal.SIGCHLD))


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run argv with signals forwarded; its exit status, or 128+N when signal N killed it (as a shell says)."""
    try:
        # The command starts with no signal blocked and SIGPIPE back to default, as from a shell.
        pid = os.posix_spawnp(argv[0], list(argv), dict(env), setsigmask=(), setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except FileNotFoundError:
        raise CommandNotRun(f"{argv[0]}: command not found", 127) from None
    except OSError as error:  # not executable, not a program, argument list too long
        raise CommandNotRun(f"{argv[0]}: {error.strerror}", 126) from None
    while True:
        received = signal.sigwaitinfo((*FORWARDED, signal.SIGCHLD))
        if received.si_signo == signal.SIGCHLD:
            ended, status = os.waitpid(pid, os.WNOHANG)
            if ended:
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
        elif not (received.si_signo in FROM_TERMINAL and received.si_code == SI_KERNEL):
            os.kill(pid, received.si_signo)
