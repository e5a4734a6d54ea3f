"""Trust, for `credbridge exec`: the plaintext authfile it serves dies with it, however it dies.

`exec` hands its command every login in Docker's format. A wrapper killed
with SIGKILL cannot clean up, so what it served must never have been a file
on a filesystem: the test kills it while the command runs on and then looks
for the secret in every file under the runtime directory, where exec works,
and through every path the command was given. The command and its store are
those of tests/commands/test_bridge.py.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.clients.test_real_clients import secret_forms
from tests.commands.test_bridge import (  # noqa: F401
    HUB_SECRET,
    HUB_USERNAME,
    IDENTITY_TOKEN,
    SECRET,
    USERNAME,
    Bridge,
    bridge,  # fixtures, used by name
    logged_in,
)

LOGINS = ((USERNAME, SECRET), (HUB_USERNAME, HUB_SECRET), ("<token>", IDENTITY_TOKEN))


def holds_a_secret(path: Path) -> bool:
    """Whether the file at path (a symlink followed to what it names now) holds a secret in any spelling."""
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError:  # a dangling symlink, or one into a process that is gone
        return False
    return any(form in data for username, secret in LOGINS for form in secret_forms(username, secret))


def everything_under(directory: Path) -> list[Path]:
    """Every entry below `directory`; one that exec's watcher removes while we look is passed over
    (Path.rglob raised FileNotFoundError for a directory removed under it)."""
    return sorted(Path(top, name) for top, directories, files in os.walk(directory) for name in directories + files)


def test_a_sigkilled_exec_leaves_no_readable_authfile_while_its_command_runs_on(logged_in: Bridge) -> None:
    runtime = Path(logged_in.env["XDG_RUNTIME_DIR"])
    running = logged_in.start_exec("trap")
    facts = running.facts()
    given = [Path(path) for path in facts["env"].values()]
    assert any(holds_a_secret(path) for path in given), "the command was not given the logins"

    running.process.send_signal(signal.SIGKILL)
    running.finish()
    try:
        assert [path for path in everything_under(runtime) if holds_a_secret(path)] == []
        assert [path for path in given if holds_a_secret(path) or holds_a_secret(path / "config.json")] == []
    finally:
        os.kill(facts["pid"], signal.SIGTERM)  # the orphaned command, which exec could no longer reach
