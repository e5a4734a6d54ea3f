"""The private directory where helpers the agent calls keep their own token files.

ecr-login writes every token it mints to a cache file in plaintext (~/.ecr/cache.json) and answers
`list` from it. Called by the agent it is pointed (credbridge.stores.router.helperenv) into
`helper-files-<pid>-<random>/<helper>` inside the agent's private directory, which goes with the
agent's token cache (lock, login, logout, exit); one a SIGKILL left is swept by its dead pid
(credbridge.files.execdirs). docs/design.md, "Token-minting helpers behind the router".
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

from credbridge import debuglog, wire
from credbridge.files import execdirs
from credbridge.helperclient import stop_by_signal

KIND = "helper-files"


class HelperFiles:
    """One directory per process inside `base` (a private directory), one subdirectory per helper."""

    def __init__(self, base: str) -> None:
        self._base = base
        self._lock = threading.Lock()
        self._top = os.path.join(base, execdirs.new_name(KIND))

    def directory(self, helper: str) -> Optional[str]:
        """`helper`'s directory, made 0700 if need be; a link or a directory not ours alone in its place
        is neither used nor followed (a new name is taken once); None when none can be made."""
        with self._lock:
            for _ in range(2):
                path = os.path.join(self._top, helper)
                if _made_private(self._top) and _made_private(path):
                    return path
                self._top = os.path.join(self._base, execdirs.new_name(KIND))
        debuglog.log("no private directory for the helper's token file: it keeps its own", helper=helper)
        return None

    def remove(self) -> None:
        """Every helper's directory (the next call makes them again); a link is not followed."""
        with self._lock:
            shutil.rmtree(self._top, ignore_errors=True)


def _made_private(path: str) -> bool:
    """mkdir never follows a link in the last component; what was there already must be ours alone."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    return wire.private_dir_is_safe(path)


@contextmanager
def kept_aside(env: Mapping[str, str]) -> Iterator[None]:
    """For a command that calls the routed helpers itself (doctor, list, logout): their token files go,
    as on the agent's calls, to a private directory beside the agent's socket, removed at the end.
    Without such a place the helper's own default is used, as on each pull served in process."""
    from credbridge.stores.router import tokencache

    place = wire.agent_dir(env, create=False)
    if tokencache.active() is not None or place is None or not wire.private_dir_is_safe(place):
        yield  # already kept aside (doctor's survey lists the logins), or nowhere to
        return
    cache = tokencache.activate(HelperFiles(place))
    try:
        with _signals_end_it_as_ctrl_c_does():
            yield
    finally:
        cache.clear()
        tokencache.deactivate()


@contextmanager
def _signals_end_it_as_ctrl_c_does() -> Iterator[None]:
    """A job killed (SIGTERM) or its terminal closed (SIGHUP) ends the command through `finally`: the
    helper it waits for is stopped and its token file removed. Signals someone ignores stay ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = [number for number in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(number) == signal.SIG_DFL]
    for number in ours:
        signal.signal(number, stop_by_signal)
    try:
        yield
    finally:
        for number in ours:
            signal.signal(number, signal.SIG_DFL)
