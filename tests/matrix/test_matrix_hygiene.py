"""Every helper keeps secrets to itself: private files, no leftovers, no followed symlink, safe children and logs.

The files are found, not listed: whatever a helper creates under its HOME,
runtime and data directories while it works is checked and then attacked,
so a new store or a new file of an old one is covered without a change here.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import Helper, Installation
from tests.contract.test_store_contract import STORES
from tests.support.matrix import (
    EVERY_HELPER,
    EVERY_HELPER_IN_PROCESS,
    assert_clean_answer,
    build_helper,
    helper_id,
    secret_spellings,
    store_message,
    stored,
    walk,
    with_env,
    written,
)
from tests.support.process import run

SECRET = "hygiene-s3cret-91ac"
VICTIM_TEXT = b"victim: must never change\n"


@pytest.fixture(params=EVERY_HELPER, ids=helper_id)
def helper(request: pytest.FixtureRequest) -> Helper:
    return build_helper(request, *request.param)


@pytest.fixture(params=EVERY_HELPER_IN_PROCESS, ids=helper_id)
def in_process(request: pytest.FixtureRequest) -> Helper:
    return build_helper(request, *request.param)


def exercise(helper: Helper) -> None:
    """Every action once, with answers checked: stdout of store, erase and list never holds a secret."""
    for server in ("hygiene.example", "https://index.docker.io/v1/"):
        stored(helper, server, "hygiene-user", SECRET)
    for action, stdin in (("get", b"hygiene.example"), ("list", b""), ("erase", b"hygiene.example")):
        result = helper(action, stdin=stdin)
        assert (result.returncode, result.stderr) == (0, b""), result
        if action != "get":
            assert not any(spelling in result.stdout for spelling in secret_spellings("hygiene-user", SECRET))


def test_every_file_and_directory_a_helper_writes_is_private_and_no_temporary_file_is_left(helper: Helper) -> None:
    before = walk(helper.env)
    exercise(helper)
    loose = {}
    for path in written(helper.env, before):
        mode = stat.S_IMODE(path.lstat().st_mode)
        kind = path.lstat().st_mode
        expected = 0o700 if stat.S_ISDIR(kind) else 0o600
        if path in before and stat.S_ISDIR(kind):
            continue  # a directory that only gained an entry: made by someone else (the fixture)
        if (stat.S_ISDIR(kind) or stat.S_ISREG(kind)) and mode != expected:
            loose[str(path)] = oct(mode)
        assert ".tmp-" not in path.name, f"temporary file left behind: {path}"
    assert loose == {}


def test_the_debug_log_and_stderr_carry_no_secret_through_every_action(helper: Helper) -> None:
    debugging = with_env(helper, CREDBRIDGE_DEBUG="1")
    stored(helper, "hygiene.example", "hygiene-user", SECRET)
    for action, stdin in (
        ("store", store_message("hygiene.example", "hygiene-user", SECRET)),
        ("get", b"hygiene.example"),
        ("list", b""),
        ("erase", b"hygiene.example"),
        ("get", b"user:" + SECRET.encode() + b"@hygiene.example"),
    ):
        result = debugging(action, stdin=stdin)
        assert result.stderr.startswith(b"credbridge["), result
        for spelling in secret_spellings("hygiene-user", SECRET):
            assert spelling not in result.stderr, result.stderr.decode()


def test_the_audit_log_records_every_action_with_no_secret_and_no_username(helper: Helper, tmp_path: Path) -> None:
    """Also for a server URL with the login in its userinfo: a short hash of the username at most."""
    state = tmp_path / "audit-state"
    auditing = with_env(helper, XDG_STATE_HOME=str(state))
    exercise(auditing)
    auditing("get", stdin=b"hygiene-user:" + SECRET.encode() + b"@hygiene.example")
    log = state / "credbridge" / "audit.log"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    actions = [record["action"] for record in records]
    assert actions == ["store", "store", "get", "list", "erase", "get"], records
    for spelling in [*secret_spellings("hygiene-user", SECRET), b"hygiene-user"]:
        assert spelling not in log.read_bytes(), f"{spelling!r} in the audit log"


def test_the_debug_log_reaches_the_caller_however_the_call_is_served(helper: Helper) -> None:
    """Served by the agent, the log lines travel back in the reply to the caller's stderr."""
    result = with_env(helper, CREDBRIDGE_DEBUG="1")("get", stdin=b"nowhere.example")
    served_by = "agent" if "CREDBRIDGE_NO_AGENT" not in helper.env else "in process"
    assert f"call served_by='{served_by}".encode() in result.stderr, result.stderr.decode()
    assert b"match query='nowhere.example' matched=None" in result.stderr or b"items=[]" in result.stderr, (
        result.stderr.decode()
    )


def test_the_debug_log_file_is_created_private_and_appended_to(helper: Helper, tmp_path: Path) -> None:
    log = tmp_path / "debug.log"
    debugging = with_env(helper, CREDBRIDGE_DEBUG=str(log))
    for _ in range(2):
        result = debugging("list")
        assert (result.returncode, result.stderr) == (0, b""), result
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert log.read_bytes().count(b" action program=") == 2


@pytest.mark.parametrize("plant", ["symlink", "others-readable-file", "fifo", "directory"])
def test_a_debug_log_path_planted_by_someone_else_is_refused_and_the_answer_unchanged(
    helper: Helper, tmp_path: Path, plant: str
) -> None:
    victim, log = tmp_path / "victim", tmp_path / "debug.log"
    victim.write_bytes(VICTIM_TEXT)
    if plant == "symlink":
        log.symlink_to(victim)
    elif plant == "others-readable-file":
        log.write_bytes(VICTIM_TEXT)
        log.chmod(0o644)
    elif plant == "fifo":
        os.mkfifo(log, 0o600)
    else:
        log.mkdir()
    started = time.monotonic()
    result = with_env(helper, CREDBRIDGE_DEBUG=str(log))("list")
    assert time.monotonic() - started < 10
    assert (result.returncode, result.stdout) == (0, helper.list().stdout)
    assert result.stderr.count(b"\n") == 1 and str(log).encode() in result.stderr, result.stderr
    assert victim.read_bytes() == VICTIM_TEXT
    if plant == "others-readable-file":
        assert log.read_bytes() == VICTIM_TEXT


#: The user's XDG base directories, shared by every program: a user may link them elsewhere (HPC homes
#: do), so a helper that creates one follows it later like any program; what it keeps below is its own.
XDG_BASE_DIRECTORIES = (".local", ".local/state", ".local/share", ".config", ".cache")


def is_xdg_base_directory(path: Path, env: dict[str, str]) -> bool:
    return any(path == Path(env["HOME"]) / base for base in XDG_BASE_DIRECTORIES)


@pytest.mark.parametrize("plant", ["symlink", "group-writable"])
def test_a_path_we_write_planted_with_a_symlink_or_loose_file_is_never_written_through(
    in_process: Helper, tmp_path: Path, plant: str
) -> None:
    """For each path the helper writes: plant the attack there, run store and erase, and the victim is untouched."""
    before = walk(in_process.env)
    exercise(in_process)
    targets = written(in_process.env, before)
    victim_file, victim_dir = tmp_path / "victim-file", tmp_path / "victim-dir"
    written_through = {}
    for path in targets:
        if not path.exists() or path in before or is_xdg_base_directory(path, in_process.env):
            continue
        victim_file.write_bytes(VICTIM_TEXT)
        victim_dir.mkdir(exist_ok=True)
        is_dir = path.is_dir()
        original = path.with_name(path.name + ".moved-by-test")
        path.rename(original)
        try:
            if plant == "symlink":
                path.symlink_to(victim_dir if is_dir else victim_file)
            elif is_dir:
                path.mkdir(mode=0o777)
                path.chmod(0o777)
            else:
                shutil.copy2(original, path)
                path.chmod(0o666)
            for action, stdin in (
                ("store", store_message("attack.example", "u", SECRET)),
                ("erase", b"attack.example"),
            ):
                assert_clean_answer(in_process(action, stdin=stdin), action)
            if victim_file.read_bytes() != VICTIM_TEXT or list(victim_dir.iterdir()):
                written_through[str(path)] = plant
            if plant == "group-writable" and not is_dir and path.exists() and not path.is_symlink():
                if stat.S_IMODE(path.stat().st_mode) == 0o666 and SECRET.encode() in path.read_bytes():
                    written_through[str(path)] = "secret written into a file others can change"
        finally:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            original.rename(path)
            shutil.rmtree(victim_dir, ignore_errors=True)
    assert written_through == {}


SPY = """#!/bin/sh
# A real helper program that records how it was started, then becomes docker-credential-singularity.
cat /proc/$$/cmdline > "{record}/cmdline.$$"
cat /proc/$$/environ > "{record}/environ.$$"
exec docker-credential-singularity "$@"
"""


def test_a_helper_we_delegate_to_gets_no_secret_in_its_argv_or_environment(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path
) -> None:
    """docker-credential-apptainer runs the credsStore its authfile names: the secret goes over the pipe only."""
    apptainer = build_helper(request, "apptainer", "direct")
    record, bindir = tmp_path / "record", tmp_path / "bin"
    record.mkdir()
    bindir.mkdir()
    spy = bindir / "docker-credential-spy"
    spy.write_text(SPY.format(record=record))
    spy.chmod(0o755)
    config_dir = Path(apptainer.env["HOME"]) / ".apptainer"
    config_dir.mkdir(mode=0o700)
    (config_dir / "docker-config.json").write_text(json.dumps({"credsStore": "spy"}))
    (config_dir / "docker-config.json").chmod(0o600)
    delegating = with_env(apptainer, PATH=f"{bindir}:{apptainer.env['PATH']}")
    stored(delegating, "delegated.example", "delegated-user", SECRET)
    got = delegating.get("delegated.example")
    assert json.loads(got.stdout)["Secret"] == SECRET, got
    recorded = sorted(record.iterdir())
    assert len(recorded) >= 4, "the spy helper was not run"
    for path in recorded:
        for spelling in secret_spellings("delegated-user", SECRET):
            assert spelling not in path.read_bytes(), f"secret in the {path.name.split('.')[0]} of a child"


def test_exec_refuses_a_symlinked_runtime_directory_and_writes_no_authfile_through_it(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path
) -> None:
    singularity = build_helper(request, "singularity", "direct")
    stored(singularity, "exec.example", "exec-user", SECRET)
    runtime = Path(tempfile.mkdtemp(prefix="cb-run-"))  # short: a deeper one is too long for a socket anyway
    request.addfinalizer(lambda: shutil.rmtree(runtime, ignore_errors=True))
    victim = tmp_path / "victim-dir"
    victim.mkdir(mode=0o700)
    (runtime / "credbridge").symlink_to(victim)
    env = {**singularity.env, "XDG_RUNTIME_DIR": str(runtime)}
    result = run([installation.executable("credbridge"), "exec", "--store", "singularity", "--", "true"], b"", env)
    assert result.returncode != 0 and b"symlink" in result.stdout + result.stderr, result
    assert list(victim.iterdir()) == []


def test_authfile_output_planted_as_a_symlink_is_not_written_through(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path
) -> None:
    singularity = build_helper(request, "singularity", "direct")
    stored(singularity, "authfile.example", "authfile-user", SECRET)
    victim, output = tmp_path / "victim", tmp_path / "out" / "config.json"
    victim.write_bytes(VICTIM_TEXT)
    output.parent.mkdir(mode=0o700)
    output.symlink_to(victim)
    run(
        [installation.executable("credbridge"), "authfile", "--store", "singularity", "-o", str(output)],
        b"",
        singularity.env,
    )
    assert victim.read_bytes() == VICTIM_TEXT


@pytest.mark.parametrize("store", STORES)
def test_with_debugging_off_the_agent_path_imports_no_diagnostics(request: pytest.FixtureRequest, store: str) -> None:
    """Off, the log costs nothing: a call the agent serves does not even import the module (-X importtime)."""
    helper = build_helper(request, store, "agent")
    interpreter = Path(helper.path).read_text().splitlines()[0][2:].split()[0]
    done = subprocess.run(
        [interpreter, "-IS", "-X", "importtime", helper.path, "list"], env=helper.env, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done
    imported = [line.rpartition("|")[2].strip() for line in done.stderr.decode().splitlines() if "|" in line]
    assert "credbridge.serve" in imported, done.stderr.decode()
    assert "credbridge.protocol" not in imported, "the call was not served by the agent"
    assert "credbridge.debuglog" not in imported
