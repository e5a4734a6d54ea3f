"""`credbridge exec`'s private directories, and the sweep of those whose exec is gone.

Each exec keeps its authfile link and SingularityCE's remote.yaml (a file: it
will not follow a link) in `exec-<pid>-<random>` beside the agent's socket.
exec removes it, a watcher does when exec is killed; when a cgroup or job
kill takes the watcher too, every credbridge command, and the agent as it
starts and while it runs, removes the directories of execs that are gone.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from typing import Optional

from credbridge import wire

_EXEC_DIR = re.compile(r"exec-(\d+)-[0-9a-f]+")


def new_name() -> str:
    """The name of this process's exec directory (the pid tells the sweep whose it is)."""
    return f"exec-{os.getpid()}-{secrets.token_hex(8)}"


def remove_stale(base: Optional[str]) -> None:
    """Remove the exec directories in `base` whose credbridge is gone (SIGKILL left no time to)."""
    if base is None or not wire.private_dir_is_safe(base):
        return
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        match = _EXEC_DIR.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    """A reused pid only delays the removal until that process ends too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, under another uid
    return True
