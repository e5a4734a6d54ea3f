"""Every helper under parallel jobs and sudden death: no torn read, no lost acknowledged write.

Batch jobs read and write one user's store at the same moment, and a job
can be SIGKILLed at any instant (OOM killer, scheduler walltime). Readers
must always see a whole store; what a writer acknowledged (exit 0) must be
there afterwards, and every entry that is listed must also be readable.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

from tests.conftest import Helper, Installation, agent_serving, keyring_started, with_helpers_on_path
from tests.support.keyring_session import PrivateKeyring
from tests.support.matrix import (
    CANARY_SERVER,
    CANARY_USERNAME,
    EVERY_HELPER,
    EVERY_HELPER_IN_PROCESS,
    build_helper,
    canary_answer,
    helper_id,
    store_message,
    with_canary,
)

WRITERS, READERS, WRITES_EACH, READS_EACH = 4, 4, 3, 4


@pytest.fixture(scope="module")
def private_keyring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKeyring]:
    """This module's own bus and gnome-keyring: here clients are killed mid-request and time out
    under load, where gnome-keyring-daemon 42 once aborted; the worker's shared keyring must not
    go down with it."""
    with keyring_started(tmp_path_factory) as keyring:
        yield keyring


@pytest.fixture(scope="module")
def running_agent(installation: Installation, private_keyring: PrivateKeyring) -> Iterator[int]:
    """The agent for this module's own keyring."""
    env = with_helpers_on_path(installation, private_keyring.env)
    with agent_serving(installation, env) as pid:
        yield pid


@pytest.fixture(params=EVERY_HELPER, ids=helper_id)
def helper(request: pytest.FixtureRequest) -> Helper:
    return with_canary(build_helper(request, *request.param))


def test_readers_see_whole_answers_while_writers_write(helper: Helper) -> None:
    def write(writer: int) -> list[str]:
        problems = []
        for number in range(WRITES_EACH):
            result = helper(
                "store",
                stdin=store_message(f"w{writer}-{number}.example", f"user{writer}", f"secret-{writer}-{number}"),
            )
            if (result.returncode, result.stdout, result.stderr) != (0, b"", b""):
                problems.append(f"store: {result}")
        return problems

    def read(_reader: int) -> list[str]:
        problems = []
        for _ in range(READS_EACH):
            got = helper.get(CANARY_SERVER)
            if (got.returncode, got.stdout, got.stderr) != (0, canary_answer(), b""):
                problems.append(f"get: {got}")
            listed = helper.list()
            try:
                whole = listed.returncode == 0 and json.loads(listed.stdout).get(CANARY_SERVER) == CANARY_USERNAME
            except ValueError:
                whole = False
            if not whole or listed.stderr:
                problems.append(f"list: {listed}")
        return problems

    with ThreadPoolExecutor(WRITERS + READERS) as pool:
        jobs = [pool.submit(write, writer) for writer in range(WRITERS)] + [
            pool.submit(read, reader) for reader in range(READERS)
        ]
        problems = [problem for job in jobs for problem in job.result()]
    assert problems == []
    listed = json.loads(helper.list().stdout)
    expected = {
        f"w{writer}-{number}.example": f"user{writer}" for writer in range(WRITERS) for number in range(WRITES_EACH)
    }
    assert expected.items() <= listed.items(), sorted(set(expected) - set(listed))


@pytest.fixture(params=EVERY_HELPER_IN_PROCESS, ids=helper_id)
def killable(request: pytest.FixtureRequest) -> Helper:
    """In process only: killing a client the agent serves would not stop the write."""
    return with_canary(build_helper(request, *request.param))


def test_sigkill_at_random_moments_keeps_every_acknowledged_write_and_a_readable_store(killable: Helper) -> None:
    chance = random.Random(7)
    acknowledged: dict[str, str] = {}
    for round_number in range(8):
        writers = []
        for writer in range(3):
            server, secret = f"killed-{round_number}-{writer}.example", f"secret-{round_number}-{writer}"
            process = subprocess.Popen(
                [killable.path, "store"],
                env=killable.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            process.stdin.write(store_message(server, f"user-{writer}", secret))
            process.stdin.close()
            writers.append((server, secret, process))
        time.sleep(chance.uniform(0.02, 0.6))
        for server, secret, process in writers:
            process.kill()
            if process.wait(timeout=60) == 0:
                acknowledged[server] = secret
    listed = killable.list()
    assert (listed.returncode, listed.stderr) == (0, b""), listed
    entries = json.loads(listed.stdout)
    assert set(acknowledged) <= set(entries), sorted(set(acknowledged) - set(entries))
    for server in entries:
        got = killable.get(server)
        assert got.returncode == 0, f"{server} is listed but cannot be read: {got}"
        if server in acknowledged:
            assert json.loads(got.stdout)["Secret"] == acknowledged[server]
    assert CANARY_SERVER in entries
