"""Trust, as an attacker tries it: the agent, its directory and its socket serve this user alone, and
nothing another user plants, and no hung call, denies service or wedges the agent."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from credbridge import __version__
from tests.conftest import Installation
from tests.support.process import Result, run
from tests.test_agent import wait_for

LOGIN = '{"ServerURL":"squat.example","Username":"u","Secret":"hunter2-agent"}'
SQUATTER = r"""
import socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(16)
print("ready", flush=True)
while True:
    connection, _ = listener.accept()
    connection.settimeout(5)
    received = 0
    try:
        while chunk := connection.recv(65536):
            received += len(chunk)
    except OSError:
        pass
    print(received, flush=True)
    connection.close()
"""


def agents_of_home(home: Path) -> list[int]:
    """Pids of credbridge agents started for this HOME (wherever their socket is)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"credbridge" in cmdline and b"agent" in cmdline and f"HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.fixture
def session(installation: Installation, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A login session of its own: HOME and a private runtime dir; its agents killed after."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    yield {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "PATH": f"{installation.bindir}:/usr/bin:/bin"}
    for pid in agents_of_home(home):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    """A second local user, made with useradd and removed afterwards."""
    name = f"cbsquat{os.getpid() % 100000}"
    _retry_on_passwd_lock(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
    try:
        yield pwd.getpwnam(name)
    finally:
        _retry_on_passwd_lock(["userdel", name])


def _retry_on_passwd_lock(argv: list[str]) -> None:
    """Other test runs may edit /etc/passwd at the same moment: useradd and userdel then ask to retry."""
    for _attempt in range(100):
        done = subprocess.run(argv, capture_output=True, check=False)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{argv} failed: {done.stderr!r}")


def as_user(user: pwd.struct_passwd) -> dict[str, object]:
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@contextmanager
def squatter_at(user: pwd.struct_passwd, path: Path) -> Iterator[subprocess.Popen[str]]:
    """A listener run by `user` whose socket is put at `path`; it prints the bytes each connection sent."""
    scratch = Path(tempfile.mkdtemp(prefix="cbsquat-"))
    os.chown(scratch, user.pw_uid, user.pw_gid)
    listener = subprocess.Popen(["python3", "-c", SQUATTER, str(scratch / "s")], stdout=subprocess.PIPE, text=True,
                                **as_user(user))  # type: ignore[call-overload]
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
        os.rename(scratch / "s", path)
        yield listener
    finally:
        listener.kill()
        listener.wait()
        shutil.rmtree(scratch)


def helper(installation: Installation, store: str, env: dict[str, str], action: str, stdin: str = "") -> Result:
    return run([installation.executable(f"docker-credential-{store}"), action], stdin, env)


def test_a_listener_of_another_user_at_the_agent_socket_gets_not_one_byte(
        installation: Installation, session: dict[str, str], other_user: pwd.struct_passwd) -> None:
    place = Path(session["XDG_RUNTIME_DIR"]) / "credbridge"
    place.mkdir(mode=0o700)
    env = {**session, "CREDBRIDGE_NO_AGENT_START": "1"}
    with squatter_at(other_user, place / f"agent-{__version__}.sock") as listener:
        stored = helper(installation, "apptainer", env, "store", LOGIN)
        listener.kill()
        received = listener.communicate()[0].split()
    assert stored.returncode == 0, stored.stdout
    assert set(received) <= {"0"}, f"the squatter received {received} bytes"
    found = helper(installation, "apptainer", {**env, "CREDBRIDGE_NO_AGENT": "1"}, "get", "squat.example")
    assert json.loads(found.stdout)["Secret"] == "hunter2-agent"
