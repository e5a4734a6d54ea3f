"""docker-credential-cryptfile beyond the store contract: locking, damage, permissions, secrecy, crashes.

Everything runs the installed executables on real files, in a session of
its own (tests.conftest.cryptfile_session), through the agent and in process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import CRYPTFILE_PASSPHRASE, Helper, Installation, cryptfile_env
from tests.support.process import Result, run

LOCKED = b"cryptfile is locked: run 'credbridge unlock'\n"
SERVER, USERNAME, SECRET = "secret-registry.example:5000", "very-private-user", "hunter2-the-secret"


@pytest.fixture
def helper(installation: Installation, cryptfile_helper_env: dict[str, str]) -> Helper:
    """A helper on a fresh cryptfile unlocked with CRYPTFILE_PASSPHRASE."""
    return Helper(installation.executable("docker-credential-cryptfile"), cryptfile_helper_env)


def credbridge(installation: Installation, env: dict[str, str], *args: str, stdin: str = "") -> Result:
    return run([installation.executable("credbridge"), *args], stdin, env)


def cryptfile(env: dict[str, str]) -> Path:
    return Path(env["CREDBRIDGE_CRYPTFILE"])


def store_json(server: str, username: str = USERNAME, secret: str = SECRET) -> str:
    return json.dumps({"ServerURL": server, "Username": username, "Secret": secret})


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.returncode == 1, result.text
    assert result.stderr == b""
    assert result.stdout.endswith(b"\n") and result.stdout.count(b"\n") == 1, result.stdout
    assert "Traceback" not in result.text
    for word in words:
        assert word in result.text, result.text


def assert_all_calls_fail(helper: Helper, *words: str) -> None:
    for result in (helper.get(SERVER), helper.list(), helper("store", stdin=store_json("new.example"))):
        assert_one_line_error(result, *words)


# -- locked ------------------------------------------------------------------


def test_locked_store_answers_one_line_quickly(installation: Installation, locked_env: dict[str, str]) -> None:
    """Locked and not created yet: a store is refused; reads find nothing (a missing file holds nothing)."""
    helper = Helper(installation.executable("docker-credential-cryptfile"), locked_env)
    for call, answer in (
        (lambda: helper("store", stdin=store_json(SERVER)), (1, LOCKED)),
        (lambda: helper.get(SERVER), (1, b"credentials not found in native keychain\n")),
        (helper.list, (0, b"{}\n")),
        (lambda: helper.erase(SERVER), (0, b"")),
    ):
        started = time.monotonic()
        result = call()
        assert time.monotonic() - started < 2
        assert (result.returncode, result.stdout, result.stderr) == (*answer, b"")
    assert not cryptfile(locked_env).exists()


def test_lock_takes_effect_at_once(installation: Installation, helper: Helper) -> None:
    """Also inside a running agent that has the decrypted content in memory."""
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    assert json.loads(helper.get(SERVER).stdout)["Secret"] == SECRET
    assert credbridge(installation, helper.env, "lock").returncode == 0
    for result in (helper.get(SERVER), helper.list()):
        assert (result.returncode, result.stdout) == (1, LOCKED)
    assert credbridge(installation, helper.env, "unlock", stdin=CRYPTFILE_PASSPHRASE).returncode == 0
    assert json.loads(helper.get(SERVER).stdout)["Secret"] == SECRET


def test_agent_sees_another_process_write_at_once(request: pytest.FixtureRequest, installation: Installation) -> None:
    through_agent = Helper(installation.executable("docker-credential-cryptfile"), cryptfile_env(request, "agent"))
    direct = Helper(through_agent.path, {**through_agent.env, "CREDBRIDGE_NO_AGENT": "1"})
    assert through_agent.list().stdout == b"{}\n"
    for round_number in range(3):
        assert direct("store", stdin=store_json(SERVER, secret=f"round-{round_number}")).returncode == 0
        assert json.loads(through_agent.get(SERVER).stdout)["Secret"] == f"round-{round_number}"
    assert direct.erase(SERVER).returncode == 0
    assert through_agent.list().stdout == b"{}\n"


# -- passphrases ---------------------------------------------------------------


def test_wrong_passphrase_is_refused_and_changes_nothing(installation: Installation, helper: Helper) -> None:
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    before = cryptfile(helper.env).read_bytes()
    assert credbridge(installation, helper.env, "lock").returncode == 0
    wrong = credbridge(installation, helper.env, "unlock", stdin="not the passphrase\n")
    assert wrong.returncode == 1
    assert wrong.stderr.count(b"\n") == 1 and b"wrong passphrase" in wrong.stderr
    assert helper.get(SERVER).stdout == LOCKED
    assert cryptfile(helper.env).read_bytes() == before


def test_passwd_re_encrypts_under_the_new_passphrase(installation: Installation, helper: Helper) -> None:
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    before = cryptfile(helper.env).read_bytes()
    refused = credbridge(installation, helper.env, "passwd", stdin="wrong old\nnew passphrase\n")
    assert refused.returncode == 1 and b"wrong current passphrase" in refused.stderr
    assert cryptfile(helper.env).read_bytes() == before
    assert (
        credbridge(installation, helper.env, "passwd", stdin=f"{CRYPTFILE_PASSPHRASE}\nnew passphrase\n").returncode
        == 0
    )
    assert cryptfile(helper.env).read_bytes() != before
    assert json.loads(helper.get(SERVER).stdout)["Secret"] == SECRET
    assert credbridge(installation, helper.env, "lock").returncode == 0
    old = credbridge(installation, helper.env, "unlock", stdin=CRYPTFILE_PASSPHRASE)
    assert old.returncode == 1 and b"wrong passphrase" in old.stderr
    assert credbridge(installation, helper.env, "unlock", stdin="new passphrase\n").returncode == 0
    assert json.loads(helper.get(SERVER).stdout)["Secret"] == SECRET


def test_passphrase_file_serves_batch_jobs(
    installation: Installation, locked_env: dict[str, str], tmp_path: Path
) -> None:
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("batch passphrase\n")
    passphrase_file.chmod(0o600)
    batch = Helper(
        installation.executable("docker-credential-cryptfile"),
        {**locked_env, "CREDBRIDGE_PASSPHRASE_FILE": str(passphrase_file)},
    )
    assert batch.list().stdout == b"{}\n"
    assert batch("store", stdin=store_json(SERVER)).returncode == 0  # first use creates the file
    assert json.loads(batch.get(SERVER).stdout)["Secret"] == SECRET
    assert Helper(batch.path, locked_env).get(SERVER).stdout == LOCKED  # nothing was cached for the session
    assert credbridge(installation, locked_env, "unlock", stdin="batch passphrase\n").returncode == 0
    assert json.loads(Helper(batch.path, locked_env).get(SERVER).stdout)["Secret"] == SECRET
    passphrase_file.write_text("wrong\n")
    assert credbridge(installation, locked_env, "lock").returncode == 0
    assert_one_line_error(batch.get(SERVER), "wrong passphrase in CREDBRIDGE_PASSPHRASE_FILE")


# -- damaged files -------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), ["damaged"]),
        (lambda data: data[: len(data) - 20], ["damaged"]),
        (lambda data: data[:30], ["truncated"]),
        (lambda data: data[:4] + (3).to_bytes(2, "big") + data[6:], ["newer credbridge", "upgrade"]),
        (lambda data: b"", ["truncated"]),
        (lambda data: b'{"auths": {}}\n' + data, ["not a credbridge cryptfile"]),
    ],
    ids=["flipped-bit", "cut-ciphertext", "cut-header", "newer-format", "empty", "not-ours"],
)
def test_a_damaged_file_gets_one_clear_line_and_is_never_overwritten(helper: Helper, damage, words: list[str]) -> None:
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    path = cryptfile(helper.env)
    path.write_bytes(damage(path.read_bytes()))
    damaged = path.read_bytes()
    assert_all_calls_fail(helper, str(path), *words)
    assert_one_line_error(helper.erase(SERVER), *words)
    assert path.read_bytes() == damaged


# -- permissions ---------------------------------------------------------------


def test_file_is_0600_and_directory_0700(helper: Helper) -> None:
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    path = cryptfile(helper.env)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    for left in path.parent.iterdir():
        assert left.stat().st_mode & 0o077 == 0, left


def test_symlinked_file_is_refused(helper: Helper, tmp_path: Path) -> None:
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    real = cryptfile(helper.env)
    link = real.parent / "link.cbf"
    link.symlink_to(real)
    linked = Helper(helper.path, {**helper.env, "CREDBRIDGE_CRYPTFILE": str(link)})
    before = real.read_bytes()
    assert_all_calls_fail(linked, "symlink")
    assert real.read_bytes() == before and link.is_symlink()


def test_group_writable_directory_is_refused(helper: Helper) -> None:
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    path = cryptfile(helper.env)
    path.parent.chmod(0o770)
    try:
        assert_all_calls_fail(helper, "writable by group or others", "chmod go-w")
    finally:
        path.parent.chmod(0o700)
    assert json.loads(helper.get(SERVER).stdout)["Secret"] == SECRET


def test_group_writable_file_is_refused(helper: Helper) -> None:
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    cryptfile(helper.env).chmod(0o620)
    assert_all_calls_fail(helper, "writable by group or others")


# -- secrecy -------------------------------------------------------------------


def test_nothing_readable_in_any_file(helper: Helper) -> None:
    """No server name, username or secret in the cryptfile, the key cache or anywhere under HOME."""
    assert helper("store", stdin=store_json(SERVER)).returncode == 0
    assert (
        helper("store", stdin=store_json("https://index.docker.io/v1/", "hub-user-xyz", "hub-token-xyz")).returncode
        == 0
    )
    roots = {cryptfile(helper.env).parent, Path(helper.env["HOME"]), Path(helper.env["XDG_RUNTIME_DIR"])}
    files = [path for root in roots for path in root.rglob("*") if path.is_file() and not path.is_socket()]
    assert cryptfile(helper.env) in files
    for path in files:
        data = path.read_bytes()
        for text in (SERVER, "secret-registry", USERNAME, SECRET, "index.docker.io", "hub-user-xyz", "hub-token-xyz"):
            assert text.encode() not in data, f"{text} readable in {path}"


# -- concurrency and crashes -----------------------------------------------------


def test_concurrent_writers_lose_nothing(helper: Helper) -> None:
    """8 processes x 10 stores each at once: every acknowledged entry is there afterwards."""
    script = (
        "for i in 0 1 2 3 4 5 6 7 8 9; do "
        'printf \'{"ServerURL":"w%s-%s.example","Username":"u%s","Secret":"s"}\' "$1" "$i" "$1" '
        '| "$0" store || exit 1; done'
    )
    writers = [
        subprocess.Popen(
            ["sh", "-c", script, helper.path, str(writer)],
            env=helper.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for writer in range(8)
    ]
    for writer in writers:
        stdout, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, (stdout, stderr)
    listed = helper.list()
    assert listed.returncode == 0
    assert json.loads(listed.stdout) == {f"w{w}-{i}.example": f"u{w}" for w in range(8) for i in range(10)}


def test_sigkill_during_writes_keeps_every_acknowledged_entry(
    installation: Installation, cryptfile_session: dict[str, str], tmp_path: Path
) -> None:
    """Kill -9 storing processes at random moments; the file always opens and holds every store that exited 0."""
    env = {
        **cryptfile_session,
        "CREDBRIDGE_CRYPTFILE": str(tmp_path / "store" / "credentials.cbf"),
        "CREDBRIDGE_NO_AGENT": "1",
    }
    assert credbridge(installation, env, "unlock", "--new", stdin=CRYPTFILE_PASSPHRASE).returncode == 0
    helper = Helper(installation.executable("docker-credential-cryptfile"), env)
    acknowledged: dict[str, str] = {}
    killed = 0
    chance = random.Random(3)
    started = time.monotonic()  # one whole store, timed now: the kills must land before, during and after its end
    assert helper.store("https://timed.example", "u", "s").returncode == 0
    acknowledged["https://timed.example"] = "u"
    store_seconds = time.monotonic() - started
    for attempt in range(40):
        server = f"crash-{attempt}.example"
        process = subprocess.Popen(
            [helper.path, "store"], env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        process.stdin.write(store_json(server, f"user{attempt}").encode())
        process.stdin.close()
        time.sleep(chance.uniform(0.0, 2 * store_seconds))  # under load a store takes longer
        process.send_signal(signal.SIGKILL)
        if process.wait(timeout=30) == 0:
            acknowledged[server] = f"user{attempt}"
        else:
            killed += 1
        listed = helper.list()
        assert listed.returncode == 0, listed.text
        assert acknowledged.items() <= json.loads(listed.stdout).items()
    assert killed > 0 and len(acknowledged) > 1, (killed, len(acknowledged))
    leftovers = [path.name for path in cryptfile(env).parent.iterdir() if path.name.startswith(".")]
    assert helper("store", stdin=store_json("after.example")).returncode == 0
    assert not [path.name for path in cryptfile(env).parent.iterdir() if path.name.startswith(".")], leftovers
    assert os.stat(cryptfile(env)).st_mode & 0o777 == 0o600
