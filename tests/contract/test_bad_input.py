"""Bad input to every action of docker-credential-keyring.

Whatever arrives on stdin or argv, a client must get a clean answer:
exactly one line on stdout ending in a newline (nothing at all for a
successful store or erase), exit code 0 or 1, NOTHING on stderr (clients
pass it through to the user's terminal), never a Python traceback, and
never a stored secret. Every test first stores a credential with a
distinctive secret and checks afterwards that it was neither echoed nor
damaged.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Helper
from tests.support.process import Result

CANARY_SERVER = "canary-registry.credbridge.test"
CANARY_USERNAME = "canary-user"
CANARY_SECRET = "CANARY-s3cret-7f3a9c-do-not-echo"
CANARY_ANSWER = (
    json.dumps(
        {"ServerURL": CANARY_SERVER, "Username": CANARY_USERNAME, "Secret": CANARY_SECRET}, separators=(",", ":")
    ).encode()
    + b"\n"
)
NOT_FOUND = b"credentials not found in native keychain\n"
TOO_LONG = b"bufio.Scanner: token too long\n"
MIB = 1024 * 1024


@pytest.fixture
def helper(keyring_helper: Helper) -> Helper:
    """Our helper, with the canary credential already in the keyring."""
    result = keyring_helper.store(CANARY_SERVER, CANARY_USERNAME, CANARY_SECRET)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result
    return keyring_helper


def assert_clean_answer(result: Result, action: str = "") -> None:
    """The invariants every answer keeps, however bad the input."""
    assert result.stderr == b"", f"stderr must stay empty, got {result.stderr[:500]!r}"
    assert b"Traceback" not in result.stdout, result.stdout[:2000]
    assert result.returncode in (0, 1), f"exit code {result.returncode}: {result.stdout[:500]!r}"
    assert CANARY_SECRET.encode() not in result.stdout, "a stored secret was echoed"
    if result.stdout == b"":
        assert (action, result.returncode) in (("store", 0), ("erase", 0)), (
            f"only a successful store or erase may answer with nothing (action {action!r}, rc {result.returncode})"
        )
    else:
        assert result.stdout.endswith(b"\n") and result.stdout.count(b"\n") == 1, (
            f"not exactly one line: {result.stdout[:500]!r}"
        )
    if result.returncode == 1:
        assert result.stdout, "a failure must say why"


def assert_canary_intact(helper: Helper) -> None:
    """The bad call neither damaged the stored credential nor broke the helper (or the agent)."""
    result = helper.get(CANARY_SERVER)
    assert (result.returncode, result.stdout, result.stderr) == (0, CANARY_ANSWER, b"")


def answer(helper: Helper, action: str, stdin: bytes) -> Result:
    result = helper(action, stdin=stdin)
    assert_clean_answer(result, action)
    return result


# -- every action, a catalogue of bad stdin ---------------------------------------

BAD_STDIN = {
    "empty": b"",
    "only-whitespace": b" \t\r\n\n",
    "bare-word": b"xx",
    "open-brace": b"{",
    "truncated-message": b'{"ServerURL":"reg.example","Username":"u","Secret":"p',
    "missing-colon": b'{"a" 1}',
    "missing-comma": b'{"a":1 "b":2}',
    "array-without-comma": b"[1 2]",
    "truncated-literal": b"nul",
    "truncated-unicode-escape": b'{"a":"\\u00',
    "wrong-types": b'{"ServerURL":1,"Username":true,"Secret":[]}',
    "top-level-array": b'[{"ServerURL":"reg.example"}]',
    "invalid-utf8": b"\xff\xfe\xfd",
    "overlong-encoding": b"\xc0\xaf",
    "truncated-multibyte": b"reg.example\xf0\x9f",
    "invalid-utf8-inside-json-string": b'{"ServerURL":"\xff","Username":"\xfe","Secret":"\xfd"}',
    "lone-high-surrogate-bytes": b"\xed\xa0\x80",
    "lone-low-surrogate-bytes": b"\xed\xbf\xbf",
    "lone-surrogate-escapes": b'{"ServerURL":"\\ud800","Username":"\\udfff","Secret":"\\ud800"}',
    "lone-surrogate-escape-as-text": b'"\\ud800"',
    "nul-byte": b"\x00",
    "nul-inside-url": b"reg\x00.example",
    "many-nul-bytes": b"\x00" * 10000,
    "nul-escape-in-secret": b'{"ServerURL":"nul-secret.example","Username":"u","Secret":"a\\u0000b"}',
    "raw-nul-in-json-string": b'{"ServerURL":"reg\x00.example","Username":"u","Secret":"p"}',
    "control-characters": bytes(range(1, 32)),
    "escape-sequences": b"\x1b[31mred\x1b[0m\x07",
    "cr-only-lines": b"\r\r\r",
    "unicode-line-separators": "reg\u2028.example\u2029".encode(),
    "byte-order-mark": b"\xef\xbb\xbf{}",
    "nested-100000-on-one-line": b"[" * 100000,
    "nested-100000-over-lines": b"[\n" * 100000,
    "nested-objects-over-lines": b'{"a":\n' * 100000,
    "line-of-65536": b"x" * 65536,
    "canary-lookalike-host": b"canary-registry.credbridge.test.evil.net",
}


@pytest.mark.parametrize("action", ["store", "get", "erase"])
@pytest.mark.parametrize("stdin", BAD_STDIN.values(), ids=BAD_STDIN.keys())
def test_bad_stdin_gets_one_clean_line_and_leaves_the_keyring_intact(helper: Helper, action: str, stdin: bytes) -> None:
    answer(helper, action, stdin)
    assert_canary_intact(helper)


@pytest.mark.parametrize("action", ["list", "version"])
@pytest.mark.parametrize(
    "stdin", [b"\xff\xfe", b"[" * 100000, b"x" * (20 * MIB)], ids=["invalid-utf8", "nested", "20-mb"]
)
def test_list_and_version_ignore_whatever_is_on_stdin(helper: Helper, action: str, stdin: bytes) -> None:
    result = answer(helper, action, stdin)
    assert result.returncode == 0
    if action == "list":
        assert result.stdout == b'{"%s":"%s"}\n' % (CANARY_SERVER.encode(), CANARY_USERNAME.encode())


# -- invalid UTF-8, lone surrogates, NUL ---------------------------------------------


@pytest.mark.parametrize("action", ["get", "erase"])
@pytest.mark.parametrize(
    "stdin",
    [b"\xff", b"reg.\x80example", b"\xc0\xaf", b"reg.example\xf0\x9f"],
    ids=["ff-byte", "stray-continuation-byte", "overlong-slash", "truncated-sequence"],
)
def test_invalid_utf8_url_is_one_line_error_without_traceback(helper: Helper, action: str, stdin: bytes) -> None:
    result = answer(helper, action, stdin)
    assert (result.returncode, result.stdout) == (1, b"the server URL is not valid UTF-8\n")
    assert_canary_intact(helper)


@pytest.mark.parametrize("action", ["get", "erase"])
@pytest.mark.parametrize(
    "stdin",
    [b"\xed\xa0\x80", b"reg.\xed\xbf\xbfexample", b"\xed\xa0\xbd\xed\xb8\x80"],
    ids=["high-surrogate", "low-surrogate-inside", "encoded-surrogate-pair-cesu8"],
)
def test_lone_surrogate_bytes_in_a_url_are_refused_as_invalid_utf8(helper: Helper, action: str, stdin: bytes) -> None:
    """UTF-8 never encodes surrogates; Python's strict decoder refuses them, as it must."""
    result = answer(helper, action, stdin)
    assert (result.returncode, result.stdout) == (1, b"the server URL is not valid UTF-8\n")


def test_lone_surrogate_escapes_in_a_store_message_are_stored_as_replacement_characters(helper: Helper) -> None:
    """Go's decoder turns an unpaired \\ud800 into U+FFFD; so do we, instead of failing to encode it."""
    stored = answer(helper, "store", b'{"ServerURL":"surrogates.example","Username":"u\\ud800","Secret":"\\udfffs"}')
    assert stored.returncode == 0
    got = answer(helper, "get", b"surrogates.example")
    assert got.stdout == '{"ServerURL":"surrogates.example","Username":"u\ufffd","Secret":"\ufffds"}\n'.encode()


def test_raw_lone_surrogate_bytes_in_a_store_message_become_replacement_characters(helper: Helper) -> None:
    stored = answer(helper, "store", b'{"ServerURL":"surrogates.example","Username":"u","Secret":"\xed\xa0\x80"}')
    assert stored.returncode == 0
    got = answer(helper, "get", b"surrogates.example")
    assert got.stdout == '{"ServerURL":"surrogates.example","Username":"u","Secret":"\ufffd\ufffd\ufffd"}\n'.encode()


@pytest.mark.parametrize("action", ["get", "erase"])
@pytest.mark.parametrize(
    "stdin", [b"reg\x00.example", b"\x00reg.example", b"reg.example\x00\n"], ids=["inside", "leading", "before-newline"]
)
def test_nul_byte_in_a_url_is_one_line_error(helper: Helper, action: str, stdin: bytes) -> None:
    result = answer(helper, action, stdin)
    assert (result.returncode, result.stdout) == (1, b"the server URL contains a NUL byte\n")
    assert_canary_intact(helper)


@pytest.mark.parametrize("field", ["ServerURL", "Username"])
def test_nul_escape_in_a_stored_server_url_or_username_is_a_clean_error_naming_the_nul(
    helper: Helper, field: str
) -> None:
    """D-Bus strings cannot carry NUL: the message must be refused before it reaches the bus.

    Sent as is, the bus daemon drops the connection and the user is told
    the D-Bus session bus failed, which sends them looking in the wrong place.
    """
    fields = {"ServerURL": "nul.example", "Username": "u", "Secret": "p", field: "a\0b"}
    result = answer(helper, "store", json.dumps(fields).encode())
    assert result.returncode == 1
    assert b"NUL" in result.stdout and b"D-Bus" not in result.stdout, result.stdout
    assert_canary_intact(helper)


def test_a_nul_escape_in_the_secret_is_stored_verbatim(helper: Helper) -> None:
    """Secrets travel as bytes over D-Bus: a NUL in one is data, not an error."""
    assert answer(helper, "store", b'{"ServerURL":"nul.example","Username":"u","Secret":"a\\u0000b"}').returncode == 0
    assert (
        answer(helper, "get", b"nul.example").stdout
        == b'{"ServerURL":"nul.example","Username":"u","Secret":"a\\u0000b"}\n'
    )


# -- deep nesting and huge input -----------------------------------------------------


def test_100000_brackets_on_one_line_hit_the_line_limit_first(helper: Helper) -> None:
    assert answer(helper, "store", b"[" * 100000).stdout == TOO_LONG


@pytest.mark.parametrize(
    "stdin",
    [b"[\n" * 100000, b'{"a":\n' * 100000, b'{"ServerURL":"x","Username":"u","Secret":' + b"[\n" * 100000],
    ids=["arrays", "objects", "inside-a-message"],
)
def test_deeply_nested_json_is_one_line_error_not_a_recursion_crash(helper: Helper, stdin: bytes) -> None:
    """Lines are joined, so nesting can exceed the line limit; Go stops at depth 10000."""
    result = answer(helper, "store", stdin)
    assert result.returncode == 1 and b"exceeded max depth" in result.stdout
    assert_canary_intact(helper)


@pytest.mark.parametrize("action", ["store", "get", "erase"])
def test_twenty_megabytes_on_one_line_is_token_too_long(helper: Helper, action: str) -> None:
    assert answer(helper, action, b"x" * (20 * MIB)).stdout == TOO_LONG
    assert_canary_intact(helper)


@pytest.mark.parametrize("action", ["store", "get", "erase"])
def test_twenty_megabytes_of_64k_lines_is_read_without_error(helper: Helper, action: str) -> None:
    """Every line is under Go's limit, so the input is valid, just huge: an ordinary answer."""
    line = b"x" * 65535 + b"\n"
    result = answer(helper, action, line * (20 * MIB // len(line) + 1))
    expected = {
        "store": (1, b"invalid character 'x' looking for beginning of value\n"),
        "get": (1, NOT_FOUND),
        "erase": (0, b""),
    }[action]
    assert (result.returncode, result.stdout) == expected
    assert_canary_intact(helper)


# -- argv -----------------------------------------------------------------------------

BAD_ARGV = {
    "no-arguments": (),
    "two-arguments": ("get", "extra"),
    "three-actions": ("store", "get", "erase"),
    "unknown-action": ("frob",),
    "empty-action": ("",),
    "unknown-flag": ("--bogus",),
    "action-with-newline": ("get\nerase",),
    "invalid-utf8-action": (os.fsdecode(b"\xff\xfe"),),
    "lone-surrogate-bytes-action": (os.fsdecode(b"\xed\xa0\x80"),),
    "huge-action": ("a" * 100000,),
}


@pytest.mark.parametrize("args", BAD_ARGV.values(), ids=BAD_ARGV.keys())
def test_wrong_argv_is_one_line_error(helper: Helper, args: tuple[str, ...]) -> None:
    result = helper(*args, stdin=CANARY_SERVER.encode())
    assert_clean_answer(result)
    assert result.returncode == 1
    assert result.stdout.startswith((b"Usage: ", b"Unknown credential action `"))
    assert_canary_intact(helper)


def test_an_invalid_utf8_action_is_named_with_replacement_characters(helper: Helper) -> None:
    result = helper(os.fsdecode(b"g\xffet"))
    assert (result.returncode, result.stdout, result.stderr) == (1, b"Unknown credential action `g?et`\n", b"")


# -- secrets inside bad messages ------------------------------------------------------

LEAKY_MESSAGES = {
    "type-error-after-the-secret": b'{"Secret":"hunter2-in-message","ServerURL":1}',
    "truncated-inside-the-secret": b'{"ServerURL":"reg.example","Username":"u","Secret":"hunter2-in-mess',
    "control-character-in-the-secret": b'{"ServerURL":"reg.example","Username":"u","Secret":"hunter2-in-message\x01"}',
    "bad-escape-in-the-secret": b'{"ServerURL":"reg.example","Username":"u","Secret":"hunter2-in-message\\q"}',
    "missing-comma-after-the-secret": b'{"Secret":"hunter2-in-message" "ServerURL":"reg.example"}',
    "missing-server-url": b'{"Secret":"hunter2-in-message","Username":"u"}',
    "missing-username": b'{"Secret":"hunter2-in-message","ServerURL":"reg.example"}',
    "secret-as-a-bare-word": b"hunter2-in-message",
    "secret-too-long-for-a-line": b'{"Secret":"hunter2-in-message' + b"x" * 65536 + b'"}',
    "nul-in-username-beside-the-secret": b'{"ServerURL":"reg.example","Username":"a\\u0000b","Secret":"hunter2-in-message"}',  # noqa: E501
}


@pytest.mark.parametrize("message", LEAKY_MESSAGES.values(), ids=LEAKY_MESSAGES.keys())
def test_a_refused_store_message_never_echoes_the_secret_it_carried(helper: Helper, message: bytes) -> None:
    result = answer(helper, "store", message)
    assert result.returncode == 1
    assert b"hunter2" not in result.stdout, result.stdout


# -- any bytes at all ----------------------------------------------------------------

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
    b"1",
    b"-",
    b".",
    b"e",
    b"\\",
    b"\\u",
    b"d800",
    b"\\ud800",
    b"\\u0000",
    b"\x00",
    b"\n",
    b"\r",
    b"\r\n",
    b" ",
    b"\t",
    b"\xff",
    b"\xed\xa0\x80",
    b"\xf0\x9f",
    "é".encode(),
    "\u2028".encode(),
    b"<token>",
]

ANY_INPUT = st.one_of(
    st.binary(max_size=512),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(JSONISH_PIECES), max_size=40).map(b"".join),
    st.dictionaries(
        st.sampled_from(["ServerURL", "Username", "Secret", "serverurl", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)),
        max_size=4,
    ).map(lambda fields: json.dumps(fields).encode()),
)


@pytest.mark.parametrize("action", ["get", "store"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stdin=ANY_INPUT)
def test_any_bytes_to_get_or_store_give_one_clean_line(helper: Helper, action: str, stdin: bytes) -> None:
    answer(helper, action, stdin)


def test_the_helper_still_answers_after_a_message_the_bus_refused(helper: Helper) -> None:
    """A NUL reaching D-Bus costs the connection; the next call (and the agent) must recover."""
    for _ in range(2):
        answer(helper, "store", b'{"ServerURL":"a\\u0000b","Username":"u","Secret":"p"}')
        assert_canary_intact(helper)
