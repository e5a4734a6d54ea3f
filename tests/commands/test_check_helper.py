"""`credbridge check-helper NAME [--write]`: the contract kit against any installed helper.

Go's helpers and each of ours pass; helpers written here to break the contract fail, each check
they break named in the table with why, and no secret printed. With --write, the throwaway logins
are erased also when Ctrl-C or SIGTERM stops the run (a real signal, mid-check).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from credbridge.testing.calls import HelperCommand
from credbridge.testing.checks import CHECK_DOMAIN, READ_ONLY, WRITING, Conversation, title
from tests.conftest import GO_SECRETSERVICE, Installation
from tests.contract.test_store_contract import STORES
from tests.support import keyring_session, passstore
from tests.support.process import Result, run

EVERY_CHECK = [*READ_ONLY, *WRITING]


def check_helper(installation: Installation, env: dict[str, str], *args: str) -> Result:
    return run([installation.executable("credbridge"), "check-helper", *args], b"", env, timeout=600)


def rows(result: Result) -> dict[str, tuple[str, str]]:
    """The table: check title -> (result, why)."""
    table = {}
    for line in result.text.splitlines():
        for check in EVERY_CHECK:
            verdict, _, rest = line.partition(" ")
            if verdict in ("ok", "FAILED") and rest.strip().startswith(title(check)):
                table[title(check)] = (verdict, rest.strip()[len(title(check)) :].strip())
    return table


def assert_every_check_passes(result: Result, checks: list) -> None:
    table = rows(result)
    failed = {name: why for name, (verdict, why) in table.items() if verdict != "ok"}
    assert (result.returncode, failed) == (0, {}), result.text + result.stderr.decode()
    assert set(table) == {title(check) for check in checks}
    assert f"{len(checks)} passed, 0 failed" in result.text


def helper_script(directory: Path, name: str, text: str) -> dict[str, str]:
    """docker-credential-NAME holding `text` in `directory`, and PATH with `directory` first."""
    directory.mkdir(exist_ok=True)
    script = directory / f"docker-credential-{name}"
    script.write_text(text)
    script.chmod(0o755)
    return {"PATH": f"{directory}:{os.environ['PATH']}"}


def go_listed(env: dict[str, str]) -> dict[str, str]:
    done = run([GO_SECRETSERVICE, "list"], b"", env)
    assert done.returncode == 0, done
    return json.loads(done.stdout)


@pytest.fixture
def go_keyring_env(private_keyring: keyring_session.PrivateKeyring) -> dict[str, str]:
    assert os.access(GO_SECRETSERVICE, os.X_OK), "install golang-docker-credential-helpers"
    keyring_session.delete_all_docker_items(private_keyring.env)
    return dict(private_keyring.env)


# -- helpers that keep the contract ---------------------------------------------------------------


def test_gos_secretservice_passes_every_check(installation: Installation, go_keyring_env: dict[str, str]) -> None:
    assert_every_check_passes(check_helper(installation, go_keyring_env, "secretservice", "--write"), EVERY_CHECK)
    assert not [server for server in go_listed(go_keyring_env) if CHECK_DOMAIN in server]


def test_gos_pass_passes_every_check(installation: Installation, tmp_path: Path) -> None:
    with passstore.pass_store({"HOME": str(tmp_path), "PATH": os.environ["PATH"]}, tmp_path) as env:
        assert_every_check_passes(check_helper(installation, env, "pass", "--write"), EVERY_CHECK)
        assert json.loads(run([passstore.GO_PASS, "list"], b"", env).stdout) == {}


@pytest.mark.parametrize("store", list(STORES))
def test_each_of_our_helpers_passes_every_check(
    request: pytest.FixtureRequest, installation: Installation, store: str
) -> None:
    env = STORES[store](request, "agent")
    name = store.partition(":")[0]
    assert_every_check_passes(check_helper(installation, env, name, "--write"), EVERY_CHECK)
    listed = json.loads(run([installation.executable(f"docker-credential-{name}"), "list"], b"", env).stdout)
    assert not [server for server in listed if CHECK_DOMAIN in server]


def test_without_write_it_only_asks(installation: Installation, go_keyring_env: dict[str, str], tmp_path: Path) -> None:
    """Every call the helper gets is logged: no store, no erase; the user's login is untouched."""
    log = tmp_path / "calls.log"
    env = {
        **go_keyring_env,
        **helper_script(
            tmp_path / "bin",
            "logged",
            f'#!/bin/sh\necho "$1" >> {log}\nexec {GO_SECRETSERVICE} "$@"\n',
        ),
    }
    assert (
        run(
            [GO_SECRETSERVICE, "store"],
            b'{"ServerURL":"mine.example","Username":"me","Secret":"s"}',
            env,
        ).returncode
        == 0
    )
    result = check_helper(installation, env, "logged")
    assert_every_check_passes(result, READ_ONLY)
    assert "--write adds" in result.text
    assert not {"store", "erase"} & set(log.read_text().split()), log.read_text()
    assert go_listed(env) == {"mine.example": "me"}


# -- helpers that break it ----------------------------------------------------------------------

BROKEN = """#!{python}
import json, sys
args = sys.argv[1:]
if not args:
    print("Usage: " + sys.argv[0] + " <store|get|erase|list|version>"); sys.exit(1)
if args[0] == "version":
    raise RuntimeError("a traceback instead of a version")
if args[0] == "list":
    print("no JSON here"); sys.exit(0)
if args[0] == "get":
    server = sys.stdin.read().strip()
    if not server:
        print("no server URL given"); sys.exit(1)
    login = {{"ServerURL": server, "Username": "someone", "Secret": "hunter2-never-print"}}
    print(json.dumps(login))
    sys.exit(0)
print("Unknown credential action `" + args[0] + "`"); sys.exit(0)
"""


def test_a_broken_helper_fails_each_check_it_breaks_and_says_why(installation: Installation, tmp_path: Path) -> None:
    env = helper_script(tmp_path / "bin", "broken", BROKEN.format(python=sys.executable))
    result = check_helper(installation, env, "broken")
    assert result.returncode == 1
    table = rows(result)
    assert table == {
        "version answers one line": (
            "FAILED",
            "version: expected exit 0 and nothing on stderr, "
            "got exit 1 and nothing on stdout; a Python traceback on stderr",
        ),
        "list answers a json object": (
            "FAILED",
            "list: expected a JSON object of server -> username, got exit 0 and 'no JSON here'",
        ),
        "list does not read stdin": ("ok", ""),
        "get of a server never stored is not found": (
            "FAILED",
            "get: expected not found (exit 1 and 'credentials not found in native keychain'), "
            "got exit 0 and " + table["get of a server never stored is not found"][1].partition("got exit 0 and ")[2],
        ),
        "get of an empty server url is refused": (
            "FAILED",
            "get of an empty URL: expected exit 1 and "
            "'no credentials server URL', got exit 1 and "
            "'no server URL given'",
        ),
        "an unknown action is refused": (
            "FAILED",
            "an unknown action: expected exit 1 and "
            "'Unknown credential action `credbridge-check`', got exit 0 "
            "and 'Unknown credential action `credbridge-check`'",
        ),
        "a call without an action shows the usage": ("ok", ""),
    }, result.text
    assert '"Username": "someone", "Secret": "<hidden>"' in table["get of a server never stored is not found"][1]
    assert "2 passed, 5 failed" in result.text
    assert "hunter2" not in result.text + result.stderr.decode()


TAMPERING = """#!{python}
import json, os, sys
path = os.environ["TAMPERING_STORE"]
logins = json.load(open(path)) if os.path.exists(path) else {{}}
args = sys.argv[1:]
if len(args) != 1:
    print("Usage: " + sys.argv[0] + " <store|get|erase|list|version>"); sys.exit(1)
action, data = args[0], sys.stdin.read() if args[0] in ("store", "get", "erase") else ""
def fail(message):
    print(message); sys.exit(1)
def save():
    json.dump(logins, open(path, "w"))
if action == "version":
    print("tampering 1.0")
elif action == "list":
    print(json.dumps({{server: login["Username"] for server, login in logins.items()}}))
elif action == "store":
    try:
        login = json.loads(data)
    except ValueError:
        fail("unexpected EOF")
    if not login["ServerURL"]:
        fail("no credentials server URL")
    if not login["Username"]:
        fail("no credentials username")
    with open(path + ".secrets", "a") as given:
        given.write(json.dumps(login["Secret"]) + "\\n")
    logins[login["ServerURL"]] = login
    save()
elif action in ("get", "erase"):
    server = data.strip()
    if not server:
        fail("no credentials server URL")
    if action == "erase":
        logins.pop(server, None); save(); sys.exit(0)
    if server not in logins:
        fail("credentials not found in native keychain")
    login = logins[server]
    login["Secret"] += "-tampered"
    print(json.dumps(login))
else:
    fail("Unknown credential action `" + action + "`")
"""


def test_a_helper_giving_back_another_secret_fails_without_printing_any(
    installation: Installation, tmp_path: Path
) -> None:
    store = tmp_path / "tampering.json"
    env = {
        **helper_script(tmp_path / "bin", "tampering", TAMPERING.format(python=sys.executable)),
        "TAMPERING_STORE": str(store),
    }
    result = check_helper(installation, env, "tampering", "--write")
    assert result.returncode == 1
    failed = {name: why for name, (verdict, why) in rows(result).items() if verdict != "ok"}
    assert failed == {
        title(check): "get: the answer differs from what was stored: Secret not as stored"
        for check in WRITING
        if "survive" in check.__name__
        or check.__name__
        in (
            "store_then_get_answers_exactly_what_was_stored",
            "store_again_replaces_the_secret",
            "two_spellings_stored_apart_each_answer_their_own",
            "get_reads_a_server_url_ended_by_a_newline",
        )
    }, result.text
    given = [json.loads(line) for line in (tmp_path / "tampering.json.secrets").read_text().splitlines()]
    assert len(given) >= len(failed)
    output = result.text + result.stderr.decode()
    assert not [secret for secret in given if secret in output]
    assert json.loads(store.read_text()) == {}, "every throwaway login erased"


# -- stopped by a signal mid-run ------------------------------------------------------------------

SLOW = """#!/bin/sh
case "$1" in
  store) : > "$MARKS/stored" ;;
  get) if [ -e "$MARKS/stored" ] && [ ! -e "$MARKS/hanging" ]; then
         echo $$ > "$MARKS/hanging.tmp"; mv "$MARKS/hanging.tmp" "$MARKS/hanging"; exec sleep 600
       fi ;;
esac
exec {go} "$@"
"""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_run_still_erases_every_throwaway_login(
    installation: Installation, go_keyring_env: dict[str, str], tmp_path: Path, stop: signal.Signals
) -> None:
    """Go's secretservice behind a wrapper that hangs on the first get after a store: the run is
    stopped while a throwaway login is in the keyring."""
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {
        **go_keyring_env,
        **helper_script(tmp_path / "bin", "slow", SLOW.format(go=GO_SECRETSERVICE)),
        "MARKS": str(marks),
    }
    with subprocess.Popen(
        [installation.executable("credbridge"), "check-helper", "slow", "--write"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        deadline = time.monotonic() + 300
        while not (marks / "hanging").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.1)
        assert [server for server in go_listed(env) if CHECK_DOMAIN in server], "a throwaway login is stored"
        process.send_signal(stop)
        stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stdout + stderr
    assert b"credbridge: stopped: no throwaway login left behind" in stdout, stdout + stderr
    assert not [server for server in go_listed(env) if CHECK_DOMAIN in server]
    with pytest.raises(ProcessLookupError):
        os.kill(int((marks / "hanging").read_text()), 0)  # the hanging call was ended, not left running


# -- what it refuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, words",
    [
        (
            "../bin/docker-credential-pass",
            "is not a helper name: give the NAME of docker-credential-NAME",
        ),
        ("no-such-helper", "docker-credential-no-such-helper is not on PATH"),
    ],
    ids=["a-path", "not-on-path"],
)
def test_a_name_it_cannot_run_is_refused_on_one_line(installation: Installation, name: str, words: str) -> None:
    result = check_helper(installation, {"PATH": os.environ["PATH"]}, name)
    assert (result.returncode, result.stdout) == (1, b"")
    assert words in result.stderr.decode() and len(result.stderr.splitlines()) == 1, result.stderr


def test_a_helper_only_in_the_current_directory_is_not_run(installation: Installation, tmp_path: Path) -> None:
    """`.` and an empty PATH entry both mean the current directory: Go refuses them, so do we."""
    here = tmp_path / "bin"
    helper_script(here, "here", "#!/bin/sh\necho ran > ran\n")
    result = subprocess.run(
        [installation.executable("credbridge"), "check-helper", "here"],
        cwd=here,
        env={"PATH": f".::{os.environ['PATH']}"},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1 and b"docker-credential-here is not on PATH" in result.stderr
    assert not (here / "ran").exists()


def test_a_helper_the_system_cannot_execute_fails_each_check_with_the_reason(
    installation: Installation, tmp_path: Path
) -> None:
    """A script without its #! line: one line of why in each row, not a crash of check-helper."""
    env = helper_script(tmp_path / "bin", "noshebang", "echo hello\n")
    result = check_helper(installation, env, "noshebang")
    assert result.returncode == 1 and result.stderr == b"", result.stderr
    assert set(rows(result).values()) == {("FAILED", "could not be run: Exec format error")}


@pytest.mark.parametrize(
    "answer",
    [
        b'{"ServerURL":"x.example","Username":"u","Secret":"hunter2"}\n',
        b'{"ServerURL":"x.example","Username":"u","secret":"hunter2"}\n',
        b'{"ServerURL":"x.example","Username":"u","Secret":"hunter2"',
        b"the token is hunter2\n",
    ],
    ids=["login", "lower-case-key", "broken-json", "a-secret-it-was-given"],
)
def test_no_answer_is_quoted_with_a_secret_in_it(answer: bytes) -> None:
    """A failure quotes what the helper said; a broken helper may say a user's secret."""
    helper = Conversation(HelperCommand(["unused"]))
    helper.secrets.add("hunter2")
    assert "hunter2" not in helper.shown(answer)
