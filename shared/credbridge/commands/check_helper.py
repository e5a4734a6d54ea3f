"""`credbridge check-helper NAME [--write]`: the contract kit's checks against an installed helper.

Anyone's docker-credential-NAME on PATH, ours or not. Read-only unless --write; then throwaway
logins on reserved `.invalid` hosts, erased after each check and again on Ctrl-C or SIGTERM
(a second signal cannot cut the erasing short). Prints a table; never a secret.
"""

from __future__ import annotations

import signal
from typing import Callable, Mapping, Optional

from credbridge.errors import HelperError
from credbridge.helperclient import find_program, is_helper_name
from credbridge.testing.calls import HelperCommand
from credbridge.testing.checks import READ_ONLY, WRITING, Check, Conversation, run_check, title

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived: the checks end, the erasing does not."""


def check_helper(name: str, write: bool, environ: Mapping[str, str], show: Callable[[str], None]) -> int:
    """0 when every check passed, 1 otherwise (or when stopped)."""
    if not is_helper_name(name):
        raise HelperError(
            f"{name!r} is not a helper name: give the NAME of docker-credential-NAME, e.g. credbridge check-helper pass"
        )
    program = find_program(f"docker-credential-{name}", environ)
    if program is None:
        raise HelperError(
            f"docker-credential-{name} is not on PATH (absolute entries only): install it, or add its directory to PATH"
        )
    helper = Conversation(HelperCommand([program], dict(environ)))
    checks = [*READ_ONLY, *WRITING] if write else READ_ONLY
    show(_heading(name, program, write))
    failures: dict[Check, str] = {}
    previous = {number: signal.signal(number, _stop) for number in STOP_SIGNALS}
    try:
        for check in checks:
            failures.update(_outcome(helper, check))
            show(_row(check, failures.get(check)))
    except Stopped:
        show(f"credbridge: stopped: {_left_behind(helper, name) or 'no throwaway login left behind'}")
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    show(f"\n{len(checks) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


def _outcome(helper: Conversation, check: Check) -> dict[Check, str]:
    try:
        run_check(helper, check)
    except AssertionError as failure:
        return {check: str(failure)}
    except OSError as error:  # e.g. a script without its #! line
        return {check: f"could not be run: {error.strerror or type(error).__name__}"}
    return {}


def _stop(_number: int, _frame: object) -> None:
    """The first signal stops the checks; later ones are ignored until the throwaways are erased."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    raise Stopped()


def _left_behind(helper: Conversation, name: str) -> Optional[str]:
    """What still needs erasing after a stop, with the command that does it."""
    try:
        left = helper.clean_up()
    except AssertionError as failure:
        return f"could not confirm the throwaway logins are gone ({failure})"
    if not left:
        return None
    commands = "; ".join(f"printf %s '{server}' | docker-credential-{name} erase" for server in left)
    return f"{len(left)} throwaway login(s) left behind: {commands}"


def _heading(name: str, program: str, write: bool) -> str:
    scope = (
        "read-only and writing checks (throwaway logins on *.invalid hosts, erased after each)"
        if write
        else "read-only checks (--write adds the checks that store and erase throwaway logins)"
    )
    return f"docker-credential-{name} ({program}): {scope}\n\n{'result':<7} {'check':<56} why"


def _row(check: Check, failure: Optional[str]) -> str:
    return f"{'ok' if failure is None else 'FAILED':<7} {title(check):<56} {failure or ''}".rstrip()
