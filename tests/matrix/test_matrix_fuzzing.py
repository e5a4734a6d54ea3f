"""Every helper, every action, any input: one clean line, no stray output, no echoed secret, in bounded time.

Each example runs the real installed executable, so examples are few in CI
(CREDBRIDGE_FUZZ_EXAMPLES, default 4 per helper and action); `tests/fuzz`
runs the same properties for hours. The debug log is attacked with the same
corpus: CREDBRIDGE_DEBUG=1 must never let a secret from the input or the
store reach stderr.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Helper, Installation, across_installations
from tests.support.matrix import (
    CANARY_SECRET,
    CANARY_SERVER,
    CANARY_USERNAME,
    EVERY_HELPER,
    assert_canary_intact,
    assert_clean_answer,
    build_helper,
    helper_id,
    secret_spellings,
    store_message,
    with_canary,
    with_env,
)

EXAMPLES = int(os.environ.get("CREDBRIDGE_FUZZ_EXAMPLES", "4"))
#: A helper answers at once; an agent round trip or a keyring under load may take a second or two.
ANSWER_WITHIN_SECONDS = 10
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 4,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

JSONISH_PIECES = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"',
    b'"ServerURL"',
    b'"Username"',
    b'"Secret"',
    b'"reg.example"',
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udfff",
    b"\\u0000",
    b"\x00",
    b"\n",
    b"\r\n",
    b" ",
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf0\x9f",
    "\u2028".encode(),
    b"https://",
    b"@",
    b"[::1]",
    b":5000",
    b"/v1/",
    b"xn--",
]
WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
#: Marked, so that a secret found in a log is a leak, not a coincidence with a path or a host name.
SECRETS = st.text(min_size=4, max_size=30).map(lambda text: "sEcReT-" + text)
HOSTS = st.sampled_from(
    [
        "reg.example",
        "REG.Example.",
        "[::1]:5000",
        "bücher.example",
        "xn--bcher-kva.example",
        "user:pw@reg.example",
        "https://index.docker.io/v1/",
        "reg.example/",
        CANARY_SERVER + ".evil.net",
    ]
)

ANY_INPUT = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(JSONISH_PIECES), max_size=60).map(b"".join),
    st.fixed_dictionaries(
        {},
        optional={
            "ServerURL": st.one_of(HOSTS, WRONG_TYPES, st.text(max_size=30)),
            "Username": st.one_of(st.text(max_size=20), WRONG_TYPES),
            "Secret": st.one_of(SECRETS, WRONG_TYPES),
        },
    ).map(lambda fields: json.dumps(fields).encode()),
    st.integers(1, 20000).map(lambda depth: b"[\n" * depth),
    st.integers(1, 20000).map(lambda depth: b'{"ServerURL":' + b'{"a":\n' * depth),
    st.integers(60000, 70000).map(lambda size: b"x" * size),
)

pytestmark = across_installations  # the venv install and the PyInstaller bundle alike


@pytest.fixture(params=EVERY_HELPER, ids=helper_id)
def helper(request: pytest.FixtureRequest, installation: Installation) -> Helper:
    """Every helper, served by the agent and in process, holding the canary credential."""
    return with_canary(build_helper(request, *request.param))


def timed(helper: Helper, action: str, stdin: bytes):
    started = time.monotonic()
    result = helper(action, stdin=stdin)
    assert time.monotonic() - started < ANSWER_WITHIN_SECONDS, f"{action} took longer than {ANSWER_WITHIN_SECONDS} s"
    return result


@pytest.mark.parametrize("action", ["store", "get", "erase"])
@FUZZ
@given(stdin=ANY_INPUT)
def test_any_input_to_any_action_gets_one_clean_line_and_nothing_on_stderr(
    helper: Helper, action: str, stdin: bytes
) -> None:
    result = timed(helper, action, stdin)
    assert_clean_answer(result, action)
    assert result.stderr == b"", result.stderr[:500]


@pytest.mark.parametrize("action", ["list", "frob"])
def test_actions_that_read_no_stdin_ignore_any_input(helper: Helper, action: str) -> None:
    result = timed(helper, action, b"\xff\xfe[" * 1000)
    assert_clean_answer(result, action)
    assert result.stderr == b""


def test_after_the_fuzzing_the_canary_is_intact(helper: Helper) -> None:
    for action in ("store", "erase", "get"):
        for stdin in (b"[\n" * 20000, CANARY_SERVER.encode() + b"\x00"):
            assert_clean_answer(timed(helper, action, stdin), action)
    assert_canary_intact(helper)


# -- the debug log over the same corpus ----------------------------------------------

LOGINS = st.tuples(
    HOSTS | st.text(min_size=1, max_size=30).filter(lambda text: "sEcReT" not in text),
    st.text(min_size=1, max_size=15).filter(lambda text: "sEcReT" not in text),
    SECRETS,
)


def assert_log_is_safe(stderr: bytes, *logins: tuple[str, str]) -> None:
    """Only log lines, and none holding a secret (raw, escaped, or as a base64 auth value)."""
    for line in stderr.splitlines():
        assert line.startswith(b"credbridge["), line[:300]
    for username, secret in ((CANARY_USERNAME, CANARY_SECRET), *logins):
        for spelling in secret_spellings(username, secret):
            assert spelling not in stderr, f"secret {secret!r} in the debug log:\n{stderr.decode(errors='replace')}"


@FUZZ
@given(login=LOGINS)
def test_the_debug_log_of_store_get_list_and_erase_never_holds_a_secret(
    helper: Helper, login: tuple[str, str, str]
) -> None:
    server, username, secret = login
    debugging = with_env(helper, CREDBRIDGE_DEBUG="1")
    for action, stdin in (
        ("store", store_message(server, username, secret)),
        ("get", server.encode()),
        ("list", b""),
        ("get", CANARY_SERVER.encode()),
        ("erase", server.encode()),
    ):
        result = timed(debugging, action, stdin)
        assert result.returncode in (0, 1) and b"Traceback" not in result.stdout
        assert b" action program=" in result.stderr, "CREDBRIDGE_DEBUG=1 logged nothing"
        assert_log_is_safe(result.stderr, (username, secret))


@FUZZ
@given(stdin=ANY_INPUT)
def test_the_debug_log_of_any_store_input_is_log_lines_only_and_holds_no_secret(helper: Helper, stdin: bytes) -> None:
    result = timed(with_env(helper, CREDBRIDGE_DEBUG="1"), "store", stdin)
    assert_clean_answer(result, "store")
    assert_log_is_safe(result.stderr, *_logins_in(stdin))


def _logins_in(stdin: bytes) -> list[tuple[str, str]]:
    """The (username, secret) a fuzzed store message carries, when it is JSON with a marked secret."""
    try:
        fields = json.loads(stdin)
    except (ValueError, RecursionError):
        return []
    if isinstance(fields, dict) and isinstance(fields.get("Secret"), str) and fields["Secret"].startswith("sEcReT-"):
        return [(fields["Username"] if isinstance(fields.get("Username"), str) else "", fields["Secret"])]
    return []
