"""The per-user agent: started on demand, never in the way, never shared with others."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import Installation, fresh_agent_runtime
from tests.support import keyring_session
from tests.support.process import Result, run


def agents_of(runtime: Path) -> list[int]:
    """Pids of agent processes whose XDG_RUNTIME_DIR is `runtime`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"credbridge.agent" in cmdline and f"XDG_RUNTIME_DIR={runtime}".encode() in environ:
            found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        time.sleep(0.05)


@pytest.fixture
def fresh_runtime(
    installation: Installation, private_keyring: keyring_session.PrivateKeyring, tmp_path: Path
) -> Iterator[dict[str, str]]:
    with fresh_agent_runtime(installation, private_keyring, tmp_path) as env:
        yield env
        for pid in agents_of(Path(env["XDG_RUNTIME_DIR"])):  # also one that lost the race for the lock
            os.kill(pid, signal.SIGKILL)


def keyring(installation: Installation, env: dict[str, str], action: str, stdin: str = "") -> Result:
    return run([installation.executable("docker-credential-keyring"), action], stdin, env)


def socket_of(env: dict[str, str]) -> list[Path]:
    return list((Path(env["XDG_RUNTIME_DIR"]) / "credbridge").glob("agent-*.sock"))


def dbus_connections_of(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))


def test_first_call_is_served_at_once_and_leaves_an_agent_for_the_next(
    installation: Installation, fresh_runtime: dict[str, str]
) -> None:
    first = keyring(installation, fresh_runtime, "list")
    assert (first.returncode, first.stdout) == (0, b"{}\n")
    wait_for(lambda: socket_of(fresh_runtime))
    [agent] = agents_of(Path(fresh_runtime["XDG_RUNTIME_DIR"]))
    sockets_before = dbus_connections_of(agent)
    assert (
        keyring(
            installation, fresh_runtime, "store", '{"ServerURL":"r.example","Username":"u","Secret":"s"}'
        ).returncode
        == 0
    )
    assert json.loads(keyring(installation, fresh_runtime, "get", "r.example").stdout)["Secret"] == "s"
    assert dbus_connections_of(agent) > sockets_before, "the agent did not serve the call (no D-Bus connection opened)"


def test_agent_directory_and_socket_are_private(installation: Installation, fresh_runtime: dict[str, str]) -> None:
    keyring(installation, fresh_runtime, "list")
    wait_for(lambda: socket_of(fresh_runtime))
    directory = Path(fresh_runtime["XDG_RUNTIME_DIR"]) / "credbridge"
    assert directory.stat().st_mode & 0o777 == 0o700
    assert all(path.stat().st_mode & 0o077 == 0 for path in directory.iterdir())


def test_a_wedged_agent_does_not_lose_the_call(installation: Installation, fresh_runtime: dict[str, str]) -> None:
    keyring(installation, fresh_runtime, "store", '{"ServerURL":"r.example","Username":"u","Secret":"s"}')
    wait_for(lambda: socket_of(fresh_runtime))
    [agent] = agents_of(Path(fresh_runtime["XDG_RUNTIME_DIR"]))
    os.kill(agent, signal.SIGSTOP)
    try:
        answer = keyring(installation, fresh_runtime, "get", "r.example")
    finally:
        os.kill(agent, signal.SIGCONT)
    assert answer.returncode == 0 and json.loads(answer.stdout)["Secret"] == "s"


def test_a_directory_others_can_enter_is_never_used(installation: Installation, fresh_runtime: dict[str, str]) -> None:
    directory = Path(fresh_runtime["XDG_RUNTIME_DIR"]) / "credbridge"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    assert keyring(installation, fresh_runtime, "list").stdout == b"{}\n"
    refused = run([installation.executable("credbridge"), "agent"], env=fresh_runtime)
    assert refused.returncode != 0 and b"not a private directory" in refused.stdout + refused.stderr
    assert not socket_of(fresh_runtime) and not agents_of(Path(fresh_runtime["XDG_RUNTIME_DIR"]))


def test_concurrent_first_calls_start_a_single_agent(installation: Installation, fresh_runtime: dict[str, str]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: keyring(installation, fresh_runtime, "list"), range(8)))
    assert all(result.stdout == b"{}\n" for result in results)
    wait_for(lambda: socket_of(fresh_runtime))
    time.sleep(1)  # let any second agent lose the lock and exit
    assert len(agents_of(Path(fresh_runtime["XDG_RUNTIME_DIR"]))) == 1


def test_idle_agent_exits_and_removes_its_socket(installation: Installation, fresh_runtime: dict[str, str]) -> None:
    env = {**fresh_runtime, "CREDBRIDGE_AGENT_IDLE_SECONDS": "1"}
    keyring(installation, env, "list")
    wait_for(lambda: socket_of(env))
    wait_for(lambda: not socket_of(env) and not agents_of(Path(env["XDG_RUNTIME_DIR"])))


def test_no_agent_mode_starts_no_process(installation: Installation, fresh_runtime: dict[str, str]) -> None:
    env = {**fresh_runtime, "CREDBRIDGE_NO_AGENT": "1"}
    assert keyring(installation, env, "list").stdout == b"{}\n"
    time.sleep(0.5)
    assert not agents_of(Path(env["XDG_RUNTIME_DIR"]))
