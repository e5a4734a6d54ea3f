"""Trust, as an attacker tries it: the agent, its directory and its socket serve this user alone, and
nothing another user plants, and no hung call, denies service or wedges the agent."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from credbridge import __version__
from tests.conftest import Installation
from tests.stores.test_agent import wait_for
from tests.support.process import Result, run

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
    for pointer in (home / ".local" / "state" / "credbridge").glob("agent-dir-*"):
        shutil.rmtree(pointer.read_text().strip(), ignore_errors=True)


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
    listener = subprocess.Popen(
        ["python3", "-c", SQUATTER, str(scratch / "s")], stdout=subprocess.PIPE, text=True, **as_user(user)
    )  # type: ignore[call-overload]
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
    installation: Installation, session: dict[str, str], other_user: pwd.struct_passwd
) -> None:
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


def helper_in(
    directory: Path,
    installation: Installation,
    store: str,
    env: dict[str, str],
    action: str,
    stdin: str = "",
    timeout: float = 30,
) -> subprocess.CompletedProcess[bytes]:
    """A helper call made from `directory`, as a tool run there makes it."""
    return subprocess.run(
        [installation.executable(f"docker-credential-{store}"), action],
        input=stdin.encode(),
        capture_output=True,
        env=env,
        cwd=directory,
        timeout=timeout,
        check=False,
    )


def agent_socket(env: dict[str, str]) -> list[Path]:
    return list((Path(env["XDG_RUNTIME_DIR"]) / "credbridge").glob("agent-*.sock"))


def started_agent(installation: Installation, env: dict[str, str], store: str = "apptainer") -> int:
    """The pid of the agent a first (in-process) call leaves behind."""
    assert helper(installation, store, env, "list").returncode == 0
    wait_for(lambda: agent_socket(env))
    [pid] = agents_of_home(Path(env["HOME"]))
    return pid


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_a_relative_cryptfile_is_where_the_caller_is_not_where_the_agent_started(
    installation: Installation, session: dict[str, str], tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    env = {
        **session,
        "CREDBRIDGE_CRYPTFILE": "creds.cbf",
        "CREDBRIDGE_PASSPHRASE_FILE": str(private_file(tmp_path / "passphrase", "correct horse\n")),
    }
    assert helper_in(first, installation, "cryptfile", env, "list").returncode == 0
    wait_for(lambda: agent_socket(env))
    [agent] = agents_of_home(Path(env["HOME"]))
    stored = helper_in(second, installation, "cryptfile", {**env, "CREDBRIDGE_DEBUG": "1"}, "store", LOGIN)
    assert stored.returncode == 0 and b"served_by='agent" in stored.stderr, stored
    assert (second / "creds.cbf").exists() and not (first / "creds.cbf").exists()
    assert os.readlink(f"/proc/{agent}/cwd") == "/"


def routed_to_a_hanging_helper(session: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The router with hang.example routed to docker-credential-sleepy, whose `get` never answers."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    sleepy = bindir / "docker-credential-sleepy"
    sleepy.write_text('#!/bin/sh\n[ "$1" = get ] && exec sleep 100\n[ "$1" = list ] && echo "{}"\nexit 0\n')
    sleepy.chmod(0o755)
    config = Path(session["HOME"]) / ".config" / "credbridge" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("primary: apptainer\nroutes:\n  hang.example: sleepy\nread: [primary]\n")
    return {**session, "PATH": f"{bindir}:{session['PATH']}", "CREDBRIDGE_AGENT_CALL_SECONDS": "3"}


def test_a_call_hung_in_a_helper_is_answered_and_blocks_no_other_call(
    installation: Installation, session: dict[str, str], tmp_path: Path
) -> None:
    env = routed_to_a_hanging_helper(session, tmp_path)
    assert helper(installation, "credbridge", env, "store", LOGIN).returncode == 0
    started_agent(installation, env, "credbridge")
    with private_file(tmp_path / "request", "hang.example").open("rb") as request:
        hung = subprocess.Popen(
            [installation.executable("docker-credential-credbridge"), "get"],
            env=env,
            stdin=request,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    try:
        time.sleep(0.5)  # the hung call holds its store now
        for action, stdin in (("get", "squat.example"), ("list", ""), ("store", LOGIN), ("get", "squat.example")):
            answer = helper(installation, "credbridge", env, action, stdin)  # within process.run's bounded wait
            assert answer.returncode == 0, (action, answer)
        out, _err = hung.communicate(timeout=60)
    finally:
        hung.kill()
    # the helper is given 0.9 of the agent's limit for a call, so the answer names it
    named = rb"docker-credential-sleepy get did not answer within 2\.[0-7] seconds "
    assert hung.returncode == 1 and out.count(b"\n") == 1 and re.match(named, out), out


def test_a_fifo_read_by_a_call_does_not_wedge_the_agent(installation: Installation, session: dict[str, str]) -> None:
    env = {**session, "CREDBRIDGE_AGENT_CALL_SECONDS": "3"}
    started_agent(installation, env)
    config = Path(env["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir()
    os.mkfifo(config)
    first = helper(installation, "apptainer", env, "get", "squat.example")
    assert first.returncode == 1 and first.stdout.count(b"\n") == 1, first
    config.unlink()
    private_file(config, '{"auths": {"squat.example": {"auth": "dTpodW50ZXIy"}}}')
    found = helper(installation, "apptainer", env, "get", "squat.example")
    assert json.loads(found.stdout)["Secret"] == "hunter2", found


def agent_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}


def connected(path: Path) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX)
    connection.connect(str(path))
    return connection


def flood(path: Path, size: int) -> None:
    """Send `size` bytes as one request, as fast as the agent takes them."""
    try:
        with connected(path) as connection:
            connection.sendall(b"\0" * size)
    except OSError:
        pass  # the agent closed it: that is the point


def test_idle_connections_do_not_make_a_thread_each(installation: Installation, session: dict[str, str]) -> None:
    agent = started_agent(installation, session)
    [path] = agent_socket(session)
    idle = [connected(path) for _ in range(300)]
    try:
        time.sleep(1)
        threads = int(agent_status(agent)["Threads"])
        assert threads < 100, f"{threads} threads for 300 idle connections"
        assert helper(installation, "apptainer", session, "list").stdout == b"{}\n"
    finally:
        for connection in idle:
            connection.close()


def test_big_requests_do_not_make_the_agent_grow(installation: Installation, session: dict[str, str]) -> None:
    agent = started_agent(installation, session)
    [path] = agent_socket(session)
    before = int(agent_status(agent)["VmRSS"].split()[0])
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: flood(path, 30 * 1024 * 1024), range(8)))
    peak = int(agent_status(agent)["VmHWM"].split()[0])
    assert peak - before < 100 * 1024, f"the agent grew from {before} kB to a peak of {peak} kB"
    assert helper(installation, "apptainer", session, "list").stdout == b"{}\n"


def test_a_request_trickling_in_is_dropped_at_its_deadline(installation: Installation, session: dict[str, str]) -> None:
    started_agent(installation, session)
    [path] = agent_socket(session)
    deadline = time.monotonic() + 60
    with connected(path) as connection:
        try:
            while time.monotonic() < deadline:
                connection.sendall(b"\0")
                time.sleep(0.5)
        except OSError:
            return  # closed by the agent
    raise AssertionError("the agent kept a connection sending a byte every 0.5 s for 60 s")


def test_stop_agent_signals_no_pid_planted_in_the_lock_file(
    installation: Installation, session: dict[str, str]
) -> None:
    place = Path(session["XDG_RUNTIME_DIR"]) / "credbridge"
    place.mkdir(mode=0o700)
    victim = subprocess.Popen(["sleep", "60"])
    try:
        private_file(place / f"agent-{__version__}.lock", f"{victim.pid}\n")
        stopped = run([installation.executable("credbridge"), "stop-agent"], env=session)
        time.sleep(0.5)
        assert victim.poll() is None, "stop-agent killed a process that is not an agent"
        assert stopped.returncode == 0 and stopped.stdout == b"credbridge: no agent of yours is running\n", stopped
    finally:
        victim.kill()
        victim.wait()


def test_stop_agent_stops_the_real_agent(installation: Installation, session: dict[str, str]) -> None:
    started_agent(installation, session)
    stopped = run([installation.executable("credbridge"), "stop-agent"], env=session)
    assert stopped.stdout == b"credbridge: the agent stops\n", stopped
    wait_for(lambda: not agents_of_home(Path(session["HOME"])) and not agent_socket(session))


PASSPHRASE = "correct horse battery staple\n"


def credbridge(installation: Installation, env: dict[str, str], *args: str, stdin: str = "") -> Result:
    return run([installation.executable("credbridge"), *args], stdin, env)


def without_runtime_dir(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "XDG_RUNTIME_DIR"}


def fallback_place(env: dict[str, str]) -> Path:
    """The agent place recorded for this host when there is no XDG_RUNTIME_DIR."""
    pointer = Path(env["HOME"]) / ".local" / "state" / "credbridge" / f"agent-dir-{os.uname().nodename}"
    return Path(pointer.read_text().strip())


@contextmanager
def squatted_by(user: pwd.struct_passwd, squatted: Path, script: str) -> Iterator[Path]:
    """`squatted`, made first by `user` running `script` (sh), removed after.

    The path is the machine's, not the test's: a lock beside it keeps another
    worker or another run of the suite from squatting it at the same moment.
    """
    with open(f"{squatted}.test-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["sh", "-c", script], check=True, **as_user(user))  # type: ignore[call-overload]
        try:
            yield squatted
        finally:
            shutil.rmtree(squatted)


@pytest.fixture
def squatted_tmp(other_user: pwd.struct_passwd) -> Iterator[Path]:
    """/tmp/credbridge-<uid> made first by another user, 0755, with a lock file of theirs in it."""
    squatted = Path(f"/tmp/credbridge-{os.getuid()}")
    with squatted_by(other_user, squatted, f"mkdir -m 755 {squatted} && echo 1 > {squatted}/agent-{__version__}.lock"):
        yield squatted


def test_a_squatted_tmp_directory_denies_no_service(
    installation: Installation, session: dict[str, str], tmp_path: Path, squatted_tmp: Path
) -> None:
    env = {**without_runtime_dir(session), "CREDBRIDGE_CRYPTFILE": str(tmp_path / "creds.cbf")}
    create_cryptfile(installation, env, tmp_path)
    batch = {**env, "CREDBRIDGE_NO_AGENT": "1", "CREDBRIDGE_PASSPHRASE_FILE": str(tmp_path / "passphrase")}
    assert (
        json.loads(helper(installation, "cryptfile", batch, "get", "squat.example").stdout)["Secret"] == "hunter2-agent"
    )
    unlocked = credbridge(installation, env, "unlock", stdin=PASSPHRASE)
    assert unlocked.returncode == 0, unlocked
    first = helper(installation, "cryptfile", env, "get", "squat.example")
    assert json.loads(first.stdout)["Secret"] == "hunter2-agent", first
    place = fallback_place(env)
    assert place.parent == Path("/tmp") and place != squatted_tmp
    assert place.stat().st_mode & 0o777 == 0o700 and place.stat().st_uid == os.getuid()
    wait_for(lambda: list(place.glob("agent-*.sock")))
    served = helper(installation, "cryptfile", {**env, "CREDBRIDGE_DEBUG": "1"}, "get", "squat.example")
    assert b"served_by='agent" in served.stderr and json.loads(served.stdout)["Secret"] == "hunter2-agent", served
    shown = credbridge(installation, env, "exec", "--store", "cryptfile", "--", "sh", "-c", 'cat "$REGISTRY_AUTH_FILE"')
    assert shown.returncode == 0 and b"squat.example" in shown.stdout, shown
    assert sorted(path.name for path in squatted_tmp.iterdir()) == [f"agent-{__version__}.lock"]


def cryptfile_sessions(session: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Two sessions of one user on one cryptfile: one with a runtime dir, one without (ssh)."""
    with_runtime = {**session, "CREDBRIDGE_CRYPTFILE": str(tmp_path / "creds.cbf")}
    return with_runtime, without_runtime_dir(with_runtime)


def create_cryptfile(installation: Installation, env: dict[str, str], tmp_path: Path) -> None:
    """The cryptfile with LOGIN in it, made in a batch (passphrase file) call: `unlock` then opens it."""
    batch = {
        **env,
        "CREDBRIDGE_NO_AGENT": "1",
        "CREDBRIDGE_PASSPHRASE_FILE": str(private_file(tmp_path / "passphrase", PASSPHRASE)),
    }
    assert helper(installation, "cryptfile", batch, "store", LOGIN).returncode == 0


def served_by_a_fresh_store(installation: Installation, env: dict[str, str]) -> bool:
    """Whether the agent answered this get with a store it opened anew (not one it kept from before)."""
    answer = helper(installation, "cryptfile", {**env, "CREDBRIDGE_DEBUG": "1"}, "get", "squat.example")
    assert b"served_by='agent" in answer.stderr and json.loads(answer.stdout)["Secret"] == "hunter2-agent", answer
    return b"decrypted_copy_current=False" in answer.stderr


@pytest.mark.parametrize("lock_without_runtime_dir", [True, False])
def test_lock_forgets_the_key_in_every_session_and_the_agent_drops_its_stores(
    installation: Installation, session: dict[str, str], tmp_path: Path, lock_without_runtime_dir: bool
) -> None:
    with_runtime, without_runtime = cryptfile_sessions(session, tmp_path)
    unlocked_in, locked_in = (
        (with_runtime, without_runtime) if lock_without_runtime_dir else (without_runtime, with_runtime)
    )
    create_cryptfile(installation, with_runtime, tmp_path)
    assert credbridge(installation, unlocked_in, "unlock", stdin=PASSPHRASE).returncode == 0
    assert helper(installation, "cryptfile", unlocked_in, "store", LOGIN).returncode == 0  # starts the agent
    wait_for(lambda: agents_of_home(Path(session["HOME"])))
    time.sleep(1)
    served_by_a_fresh_store(installation, unlocked_in)
    assert not served_by_a_fresh_store(installation, unlocked_in), "the agent keeps no store: nothing to test"
    locked = credbridge(installation, locked_in, "lock")
    assert locked.returncode == 0, locked
    refused = helper(installation, "cryptfile", unlocked_in, "get", "squat.example")
    assert refused.returncode == 1 and b"locked" in refused.stdout, refused
    assert credbridge(installation, unlocked_in, "unlock", stdin=PASSPHRASE).returncode == 0
    assert served_by_a_fresh_store(installation, unlocked_in), "the agent still held the decrypted store after lock"


def test_the_agent_drops_its_stores_when_the_key_expires(
    installation: Installation, session: dict[str, str], tmp_path: Path
) -> None:
    env, _ = cryptfile_sessions(session, tmp_path)
    create_cryptfile(installation, env, tmp_path)
    assert credbridge(installation, env, "unlock", "--timeout", "4", stdin=PASSPHRASE).returncode == 0
    assert helper(installation, "cryptfile", env, "store", LOGIN).returncode == 0
    wait_for(lambda: agent_socket(env))
    served_by_a_fresh_store(installation, env)
    assert not served_by_a_fresh_store(installation, env), "the agent keeps no store: nothing to test"
    time.sleep(6)
    assert credbridge(installation, env, "unlock", stdin=PASSPHRASE).returncode == 0
    assert served_by_a_fresh_store(installation, env), "the agent still held the decrypted store after the key expired"


@pytest.fixture
def squatted_shared_place(other_user: pwd.struct_passwd) -> Iterator[Path]:
    """/tmp/credbridge made first by another user, 0755: the place a shared runtime dir of /tmp would give."""
    with squatted_by(other_user, Path("/tmp/credbridge"), "mkdir -m 755 /tmp/credbridge") as squatted:
        yield squatted


def test_a_shared_runtime_dir_is_not_the_agent_place(
    installation: Installation, session: dict[str, str], tmp_path: Path, squatted_shared_place: Path
) -> None:
    """XDG_RUNTIME_DIR=/tmp (root's, sticky, open to all) is no runtime dir of ours: the random-name fallback is
    used."""
    env = {**session, "XDG_RUNTIME_DIR": "/tmp", "CREDBRIDGE_CRYPTFILE": str(tmp_path / "creds.cbf")}
    create_cryptfile(installation, env, tmp_path)
    unlocked = credbridge(installation, env, "unlock", stdin=PASSPHRASE)
    assert unlocked.returncode == 0, unlocked
    shown = credbridge(installation, env, "exec", "--store", "cryptfile", "--", "sh", "-c", 'cat "$REGISTRY_AUTH_FILE"')
    assert shown.returncode == 0 and b"squat.example" in shown.stdout, shown
    assert fallback_place(env).parent == Path("/tmp") and list(squatted_shared_place.iterdir()) == []


def test_a_passphrase_file_of_the_callers_own_descriptors_is_read_by_the_caller(
    installation: Installation, session: dict[str, str], tmp_path: Path
) -> None:
    """CREDBRIDGE_PASSPHRASE_FILE=<(cat pp): /dev/fd/N means the caller's descriptor N, which the agent cannot open."""
    env = {**session, "CREDBRIDGE_CRYPTFILE": str(tmp_path / "creds.cbf")}
    create_cryptfile(installation, env, tmp_path)
    started_agent(installation, env)
    for name in ("/dev/fd/{}", "/proc/self/fd/{}"):
        readable, writable = os.pipe()
        os.write(writable, PASSPHRASE.encode())
        os.close(writable)
        try:
            done = subprocess.run(
                [installation.executable("docker-credential-cryptfile"), "get"],
                input=b"squat.example",
                capture_output=True,
                env={**env, "CREDBRIDGE_PASSPHRASE_FILE": name.format(readable)},
                pass_fds=[readable],
                timeout=30,
                check=False,
            )
        finally:
            os.close(readable)
        assert done.returncode == 0 and json.loads(done.stdout)["Secret"] == "hunter2-agent", done


def test_a_runtime_dir_too_long_for_a_socket_still_gets_an_agent(
    installation: Installation, session: dict[str, str], tmp_path: Path
) -> None:
    """A Unix socket path holds 107 bytes on Linux; a deeper XDG_RUNTIME_DIR of ours takes the random-name
    fallback instead of an agent dying at start with a traceback (seen under pytest-xdist's longer paths)."""
    runtime = tmp_path / ("r" * 60) / ("u" * 60)
    runtime.mkdir(mode=0o700, parents=True)
    env = {**session, "XDG_RUNTIME_DIR": str(runtime)}
    assert helper(installation, "apptainer", env, "list").returncode == 0
    wait_for(lambda: list(fallback_place(env).glob("agent-*.sock")))
    assert fallback_place(env).parent == Path("/tmp") and not (runtime / "credbridge").exists()
    assert len(agents_of_home(Path(env["HOME"]))) == 1
