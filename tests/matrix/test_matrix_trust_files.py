"""Trust, continued: nothing a file, a directory or another helper's answer says can run foreign code,
wedge a helper, hide a login or take over the terminal.

Every test drives the installed helpers and `credbridge` in a temporary HOME, served in process
(CREDBRIDGE_NO_AGENT=1: the agent's own bounds are tested with the agent). Planted programs are
shell scripts that leave a marker file when run: a marker means foreign code ran.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pytest

from tests.conftest import Installation
from tests.support.process import Result

GO_PASS = "/usr/bin/docker-credential-pass"
NOT_FOUND = b"credentials not found in native keychain\n"
#: No call here may take longer; a hang is ended (with all its descendants) and fails the test.
CALL_BOUND_SECONDS = 30


def call(
    argv: Sequence[str],
    stdin: bytes | str = b"",
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[Path] = None,
    timeout: float = CALL_BOUND_SECONDS,
    limit_memory: Optional[int] = None,
) -> Result:
    """Run a program in its own process group; a call over the bound is killed with every descendant."""
    data = stdin.encode() if isinstance(stdin, str) else stdin

    def limits() -> None:
        if limit_memory is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit_memory, limit_memory))

    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=limits,
    )
    try:
        stdout, stderr = process.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"{argv[0]} did not answer within {timeout} s") from None
    return Result(stdout, stderr, process.returncode)


@pytest.fixture
def user_env(installation: Installation, tmp_path: Path) -> dict[str, str]:
    """A bare HOME whose router writes to an (absent) cryptfile: no keyring, no agent, only absolute PATH entries."""
    home = tmp_path / "home"
    (home / ".config" / "credbridge").mkdir(mode=0o700, parents=True)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    write_file(home / ".config" / "credbridge" / "config.yaml", "primary: cryptfile\n")
    return {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "CREDBRIDGE_NO_AGENT": "1",
        "LANG": "C.UTF-8",
        "PATH": f"{installation.bindir}:/usr/bin:/bin",
        "CREDBRIDGE_CRYPTFILE": str(tmp_path / "store.cbf"),
    }


def home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"])


def write_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def write_config(env: Mapping[str, str], text: str) -> None:
    write_file(home(env) / ".config" / "credbridge" / "config.yaml", text)


def planted(directory: Path, name: str, marker: Path, answer: str = "") -> Path:
    """An executable that leaves `marker` when run (and prints `answer`): foreign code in reach."""
    script = f"#!/bin/sh\necho ran >> '{marker}'\n" + (f"printf '%s\\n' '{answer}'\n" if answer else "")
    return write_file(directory / name, script, 0o755)


def docker_login(username: str, secret: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{username}:{secret}".encode()).decode()}


def apptainer_docker_config(env: Mapping[str, str]) -> Path:
    return home(env) / ".apptainer" / "docker-config.json"


def docker_config(env: Mapping[str, str]) -> Path:
    return home(env) / ".docker" / "config.json"


def helper(
    installation: Installation, name: str, action: str, stdin: str, env: Mapping[str, str], cwd: Optional[Path] = None
) -> Result:
    return call([installation.executable(f"docker-credential-{name}"), action], stdin, env, cwd)


def credbridge(installation: Installation, env: Mapping[str, str], *args: str) -> Result:
    return call([installation.executable("credbridge"), *args], "", env)


def assert_one_line(result: Result, *words: str) -> None:
    """A helper's failure: one line on stdout naming the cause, exit 1, no traceback."""
    assert result.returncode == 1 and result.stdout.count(b"\n") == 1, result
    assert b"Traceback" not in result.stdout + result.stderr, result
    for word in words:
        assert word in result.text, (word, result.text)


def assert_command_line(result: Result, *words: str) -> None:
    """A `credbridge` command's failure: one line on stderr naming the file and the fix, no traceback."""
    text = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1 and text.count("\n") == 1 and text.startswith("credbridge: "), result
    for word in words:
        assert word in text, (word, text)


# -- 1. a helper from the current directory ------------------------------------------------------


@pytest.mark.parametrize("path_tail", [":", ":.", ":relative/bin"], ids=["empty-entry", "dot", "relative"])
def test_a_routed_helper_is_never_found_through_a_relative_path_entry(
    installation: Installation, user_env: dict[str, str], tmp_path: Path, path_tail: str
) -> None:
    checkout = tmp_path / "untrusted-checkout"
    marker = tmp_path / "ran"
    planted(checkout, "docker-credential-planted", marker, '{"Username":"attacker","Secret":"x"}')
    planted(checkout / "relative" / "bin", "docker-credential-planted", marker, '{"Username":"attacker","Secret":"x"}')
    write_config(user_env, "primary: cryptfile\nroutes:\n  routed.example: planted\n")
    env = {**user_env, "PATH": user_env["PATH"] + path_tail}
    got = helper(installation, "credbridge", "get", "routed.example", env, cwd=checkout)
    assert not marker.exists(), "a helper in the current directory ran"
    assert_one_line(got, "docker-credential-planted is not on PATH")


# -- 2. helper names with a slash -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
@pytest.mark.parametrize("where", ["apptainer", "docker-fallback"])
def test_a_helper_name_with_a_slash_in_a_docker_config_runs_nothing(
    installation: Installation, user_env: dict[str, str], tmp_path: Path, key: str, where: str
) -> None:
    checkout = tmp_path / "untrusted-checkout"
    marker = tmp_path / "ran"
    (checkout / "docker-credential-x").mkdir(parents=True)
    planted(checkout, "evil", marker, '{"Username":"attacker","Secret":"x"}')
    named = {"x.example": "x/../evil"} if key == "credHelpers" else "x/../evil"
    path = apptainer_docker_config(user_env) if where == "apptainer" else docker_config(user_env)
    write_file(path, json.dumps({key: named}))
    for action in ("get", "list"):
        result = helper(installation, "apptainer", action, "x.example", user_env, cwd=checkout)
        assert not marker.exists(), f"{action} ran a program named by {path}"
        assert b"attacker" not in result.stdout, result
    assert helper(installation, "apptainer", "get", "x.example", user_env, cwd=checkout).stdout == NOT_FOUND


# -- 7. an empty answer is not a login ------------------------------------------------------------


def test_go_pass_without_a_store_answers_empty_and_the_router_goes_on_to_apptainer(
    installation: Installation, user_env: dict[str, str]
) -> None:
    assert os.access(GO_PASS, os.X_OK), "install golang-docker-credential-helpers (docker-credential-pass)"
    write_config(user_env, "primary: cryptfile\nread: [pass, apptainer]\n")
    write_file(apptainer_docker_config(user_env), json.dumps({"auths": {"x.example": docker_login("alice", "s3cret")}}))
    empty = call([GO_PASS, "get"], "x.example", user_env)
    assert (empty.returncode, json.loads(empty.stdout)["Username"]) == (0, ""), "Go's pass no longer answers empty"
    got = helper(installation, "credbridge", "get", "x.example", user_env)
    assert got.returncode == 0, got
    assert (json.loads(got.stdout)["Username"], json.loads(got.stdout)["Secret"]) == ("alice", "s3cret")


# -- 5. files that are not files: a FIFO must not wedge a call --------------------------------------

FIFO_PLACES = {
    "docker-config-fallback": lambda env: docker_config(env),
    "apptainer-docker-config": lambda env: apptainer_docker_config(env),
    "apptainer-remote-yaml": lambda env: home(env) / ".apptainer" / "remote.yaml",
    "singularity-docker-config": lambda env: home(env) / ".singularity" / "docker-config.json",
}


@pytest.mark.parametrize("place", FIFO_PLACES)
def test_a_fifo_in_place_of_a_file_is_one_line_naming_it_not_a_hang(
    installation: Installation, user_env: dict[str, str], place: str
) -> None:
    fifo = FIFO_PLACES[place](user_env)
    fifo.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.mkfifo(fifo, 0o600)
    store = "singularity" if place.startswith("singularity") else "apptainer"
    assert_one_line(helper(installation, store, "get", "x.example", user_env), str(fifo), "not a regular file")
    routed = helper(installation, "credbridge", "get", "x.example", user_env)
    assert routed.returncode == 1 and b"Traceback" not in routed.stdout + routed.stderr, routed


def test_a_fifo_in_place_of_the_credbridge_config_is_one_line_naming_it(
    installation: Installation, user_env: dict[str, str]
) -> None:
    config = home(user_env) / ".config" / "credbridge" / "config.yaml"
    config.unlink()
    os.mkfifo(config, 0o600)
    assert_one_line(helper(installation, "credbridge", "get", "x.example", user_env), str(config), "not a regular file")
    assert_command_line(credbridge(installation, user_env, "config"), str(config), "not a regular file")


# -- 6. no command ends in a traceback ------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["setup", "--tool", "docker"], ["migrate", "--to", "cryptfile", "--dry-run"], ["list"]],
    ids=lambda command: command[0],
)
def test_a_directory_in_place_of_dockers_config_ends_every_command_in_one_line(
    installation: Installation, user_env: dict[str, str], command: list[str]
) -> None:
    docker_config(user_env).mkdir(mode=0o700, parents=True)
    done = credbridge(installation, user_env, *command)
    assert b"Traceback" not in done.stdout + done.stderr, done.stderr.decode()
    if command[0] in ("setup", "migrate"):
        assert_command_line(done, str(docker_config(user_env)), "not a regular file")


def test_deeply_nested_json_in_dockers_config_is_one_line_naming_it(
    installation: Installation, user_env: dict[str, str]
) -> None:
    write_file(docker_config(user_env), '{"auths": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert_one_line(helper(installation, "apptainer", "get", "x.example", user_env), str(docker_config(user_env)))
    listed = credbridge(installation, user_env, "list")
    assert b"Traceback" not in listed.stdout + listed.stderr, listed.stderr.decode()
    assert listed.returncode == 0 or listed.stderr.decode().count("\n") == 1, listed


# -- 4. YAML alias bombs --------------------------------------------------------------------------


def alias_bomb(levels: int, last_key: str) -> str:
    """About 400 bytes whose last value expands to 9**levels strings."""
    names = [chr(ord("a") + level) for level in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * 9)}]"]
    lines += [f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]" for previous, name in zip(names, names[1:])]
    return "\n".join([*lines, f"{last_key}: *{names[-1]}", ""])


#: Far more than a helper needs, far less than an expanded bomb takes.
MEMORY_LIMIT_BYTES = 1 << 30


def test_an_alias_bomb_in_the_credbridge_config_is_refused_in_one_short_line(
    installation: Installation, user_env: dict[str, str]
) -> None:
    bomb = alias_bomb(10, "primary")
    assert len(bomb) < 500
    write_config(user_env, bomb)
    for argv in (
        [installation.executable("docker-credential-credbridge"), "get"],
        [installation.executable("credbridge"), "config"],
    ):
        done = call(argv, "x.example", user_env, limit_memory=MEMORY_LIMIT_BYTES)
        output = done.stdout + done.stderr
        assert done.returncode == 1 and len(output) < 500 and output.count(b"\n") == 1, output[:500]
        assert b"config.yaml" in output and b"alias" in output and b"Traceback" not in output, output


def test_an_alias_bomb_in_remote_yaml_is_refused_in_one_short_line(
    installation: Installation, user_env: dict[str, str]
) -> None:
    write_file(home(user_env) / ".apptainer" / "remote.yaml", alias_bomb(10, "Credentials"))
    for action in ("get", "list"):
        done = call(
            [installation.executable("docker-credential-apptainer"), action],
            "x.example",
            user_env,
            limit_memory=MEMORY_LIMIT_BYTES,
        )
        assert_one_line(done, "remote.yaml", "alias")
        assert len(done.stdout) < 500, done.stdout[:500]


# -- 8. loops through external helpers, and delegates that do not answer ----------------------------


def test_a_chain_through_an_external_helper_back_into_apptainer_ends_at_the_first_turn(
    installation: Installation, user_env: dict[str, str], tmp_path: Path
) -> None:
    runs = tmp_path / "loopy-runs"
    write_file(
        tmp_path / "bin" / "docker-credential-loopy",
        f"#!/bin/sh\necho ran >> '{runs}'\nexec docker-credential-apptainer \"$@\"\n",
        0o755,
    )
    env = {**user_env, "PATH": f"{installation.bindir}:{tmp_path / 'bin'}:/usr/bin:/bin"}
    write_file(apptainer_docker_config(env), json.dumps({"credsStore": "loopy"}))
    assert helper(installation, "apptainer", "get", "x.example", env).stdout == NOT_FOUND
    assert runs.read_text().count("ran") == 1, "the loop went round more than once"
    assert helper(installation, "credbridge", "get", "x.example", env).stdout == NOT_FOUND
    assert runs.read_text().count("ran") == 2, "the loop went round more than once"


def test_a_delegate_that_does_not_answer_is_ended_with_everything_it_started(
    installation: Installation, user_env: dict[str, str], tmp_path: Path
) -> None:
    pid_file = tmp_path / "descendant.pid"
    write_file(
        tmp_path / "bin" / "docker-credential-sleepy", f"#!/bin/sh\nsleep 600 &\necho $! > '{pid_file}'\nwait\n", 0o755
    )
    env = {
        **user_env,
        "PATH": f"{installation.bindir}:{tmp_path / 'bin'}:/usr/bin:/bin",
        "CREDBRIDGE_HELPER_TIMEOUT": "2",
    }
    write_file(apptainer_docker_config(env), json.dumps({"credsStore": "sleepy"}))
    assert_one_line(
        helper(installation, "apptainer", "get", "x.example", env),
        "docker-credential-sleepy get did not answer within 2 seconds",
    )
    descendant = int(pid_file.read_text())
    for _ in range(100):  # the kill is sent before the answer; the kernel may take a moment to reap
        if not Path(f"/proc/{descendant}").exists() or "Z" in Path(f"/proc/{descendant}/stat").read_text().split()[2]:
            break
        time.sleep(0.05)
    else:
        os.kill(descendant, signal.SIGKILL)
        raise AssertionError("the delegate's child outlived the timeout")


# -- 12. a hand-edited setup journal --------------------------------------------------------------


def journal_path(env: Mapping[str, str]) -> Path:
    return home(env) / ".local" / "share" / "credbridge" / "setup" / "journal.json"


@pytest.mark.parametrize("edit", ["restore-elsewhere", "delete-elsewhere", "created", "backup-outside"])
def test_undo_of_a_hand_edited_journal_touches_no_file_setup_does_not_manage(
    installation: Installation, user_env: dict[str, str], tmp_path: Path, edit: str
) -> None:
    write_file(docker_config(user_env), json.dumps({"credsStore": "secretservice"}))
    done = credbridge(installation, user_env, "setup", "--tool", "docker")
    assert done.returncode == 0, done
    victim = write_file(tmp_path / "victim.txt", "precious\n")
    journal = json.loads(journal_path(user_env).read_text())
    [(config_path, entry)] = journal["files"].items()
    if edit == "restore-elsewhere":  # undo would write the backup over the victim
        journal["files"] = {str(victim): {**entry, "written": hashlib.sha256(victim.read_bytes()).hexdigest()}}
    elif edit == "delete-elsewhere":  # undo would remove a file "setup created"
        journal["files"][str(victim)] = {
            **entry,
            "existed": False,
            "backup": None,
            "written": hashlib.sha256(victim.read_bytes()).hexdigest(),
        }
    elif edit == "created":
        journal["created"].append(str(victim))
    else:
        journal["files"][config_path]["backup"] = os.path.relpath(victim, journal_path(user_env).parent)
    journal_path(user_env).write_text(json.dumps(journal))
    undone = credbridge(installation, user_env, "setup", "--undo")
    assert victim.read_text() == "precious\n", f"undo changed {victim}: {undone}"
    assert_command_line(undone, str(journal_path(user_env)))


# -- 9. terminal control characters from files ------------------------------------------------------

#: A forged table row (carriage return, erase line), a new window title (OSC 0), hidden text (SGR 8),
#: a right-to-left override and a C1 control: none may reach a terminal raw.
HOSTILE = "\r\x1b[2Kforged.example  root\x1b]0;pwned\x07\x1b[8m\u202e\x9b"
RAW_CONTROLS = ("\r", "\x1b", "\x07", "\u202e", "\x9b")


def assert_no_raw_control(result: Result) -> None:
    text = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert not any(control in text for control in RAW_CONTROLS), ascii(text)
    assert "Traceback" not in text, text


def test_names_from_files_reach_list_migrate_and_doctor_escaped(
    installation: Installation, user_env: dict[str, str]
) -> None:
    logins = {f"evil{HOSTILE}.example": docker_login(f"bob{HOSTILE}", "s3cret")}
    write_file(apptainer_docker_config(user_env), json.dumps({"auths": logins}))
    write_file(
        home(user_env) / ".config" / "containers" / "registries.conf",
        'credential-helpers = ["x\\u001b]0;pwned\\u0007"]\n',
    )
    listed = credbridge(installation, user_env, "list")
    assert listed.returncode == 0 and "\\x1b" in listed.text, listed
    assert_no_raw_control(listed)
    as_json = credbridge(installation, user_env, "list", "--json")
    assert f"bob{HOSTILE}" in [row["username"] for row in json.loads(as_json.stdout)], "--json must stay exact"
    moved = credbridge(installation, user_env, "migrate", "--to", "cryptfile", "--dry-run")
    assert "would move" in moved.text, moved
    assert_no_raw_control(moved)
    assert_no_raw_control(credbridge(installation, user_env, "doctor", "--registry", f"evil{HOSTILE}.example"))


# -- 10. docker-config keys in any case, as Go's encoding/json reads them ---------------------------

PASSPHRASE = "correct horse battery staple"


def test_auths_in_capitals_are_seen_by_list_and_migrate_which_rewrites_them_in_place(
    installation: Installation, user_env: dict[str, str]
) -> None:
    write_file(
        docker_config(user_env),
        json.dumps(
            {
                "AUTHS": {"x.example": {"Auth": docker_login("alice", "s3cret")["auth"]}},
                "HttpHeaders": {"User-Agent": "kept"},
            }
        ),
    )
    listed = credbridge(installation, user_env, "list", "--json")
    assert ("x.example", "alice") in [(row["registry"], row["username"]) for row in json.loads(listed.stdout)], listed
    unlocked = call([installation.executable("credbridge"), "unlock", "--new"], PASSPHRASE + "\n", user_env)
    assert unlocked.returncode == 0, unlocked
    moved = credbridge(installation, user_env, "migrate", "--to", "cryptfile")
    assert moved.returncode == 0 and "moving x.example" in moved.text, moved
    assert json.loads(docker_config(user_env).read_text()) == {
        "AUTHS": {"x.example": {}},
        "HttpHeaders": {"User-Agent": "kept"},
        "credsStore": "cryptfile",
    }
    got = helper(installation, "cryptfile", "get", "x.example", user_env)
    assert json.loads(got.stdout)["Secret"] == "s3cret", got


@pytest.mark.parametrize("spelling", ["CredHelpers", "CREDHELPERS", "credhelper\u017f"])
def test_cred_helpers_in_any_case_send_apptainer_to_that_helper(
    installation: Installation, user_env: dict[str, str], tmp_path: Path, spelling: str
) -> None:
    marker = tmp_path / "ran"
    planted(tmp_path / "bin", "docker-credential-chosen", marker, '{"Username":"carol","Secret":"from-helper"}')
    env = {**user_env, "PATH": f"{user_env['PATH']}:{tmp_path / 'bin'}"}
    write_file(apptainer_docker_config(env), json.dumps({spelling: {"x.example": "chosen"}}))
    got = helper(installation, "apptainer", "get", "x.example", env)
    assert got.returncode == 0 and json.loads(got.stdout)["Secret"] == "from-helper", got


def test_setup_never_runs_a_tool_from_the_current_directory(
    installation: Installation, user_env: dict[str, str], tmp_path: Path
) -> None:
    checkout = tmp_path / "untrusted-checkout"
    marker = tmp_path / "ran"
    planted(checkout, "apptainer", marker, "apptainer version 1.4.0")
    env = {**user_env, "PATH": user_env["PATH"] + ":"}
    done = call([installation.executable("credbridge"), "setup", "--tool", "apptainer"], "", env, cwd=checkout)
    assert not marker.exists(), f"setup ran ./apptainer: {done}"
