"""`credbridge exec`'s private directories, the agent's helper files, and the sweep of those whose process is gone.

Each exec keeps its authfile link and SingularityCE's remote.yaml (a file: it
will not follow a link) in `exec-<pid>-<random>` beside the agent's socket;
the agent keeps the token files of helpers it calls in `helper-files-<pid>-<random>`
(credbridge.stores.router.helperfiles). exec removes its own, a watcher does when exec is
killed, the agent removes its own as it exits; when a SIGKILL or a cgroup or job kill leaves
one, every credbridge command, and the agent as it starts and while it runs, removes those
whose process is gone.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from typing import Optional

from credbridge import wire

_PROCESS_DIR = re.compile(r"(?:exec|helper-files)-(\d+)-[0-9a-f]+")


def new_name(kind: str = "exec") -> str:
    """The name of a directory of this process (the pid tells the sweep whose it is)."""
    return f"{kind}-{os.getpid()}-{secrets.token_hex(8)}"


def remove_stale(base: Optional[str]) -> None:
    """Remove the directories in `base` whose credbridge is gone (SIGKILL left no time to)."""
    if base is None or not wire.private_dir_is_safe(base):
        return
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        match = _PROCESS_DIR.fullmatch(name)
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
