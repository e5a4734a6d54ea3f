"""Conformance: docker-credential-keyring answers byte for byte like the Go reference.

The reference is Debian's /usr/bin/docker-credential-secretservice 0.6.4.
Each case is one conversation (a sequence of helper calls). It is held with
the Go helper, the keyring is emptied, and it is held again with ours, on
the same private gnome-keyring: stdout and exit codes must be identical.
Our stderr must stay empty (the Go helper lets libsecret warnings through).
Where the provider matters (values through it, items shared with Go's
helper), a test runs on KeePassXC too (@on_every_secret_service).

Where ours deliberately differs, the test pins our behaviour and its
docstring says why. Known gaps in the wording of rare JSON errors are
strict xfails: when one is fixed it turns into an XPASS failure, and the
case belongs in the agreeing tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Sequence

import pytest

from credbridge import __version__
from tests.conftest import Helper, on_every_secret_service
from tests.support import keyring_session

NOT_FOUND = b"credentials not found in native keychain\n"
#: One helper call: (argv after the program name, stdin).
Call = tuple[tuple[str, ...], bytes]


# -- how a conversation is held and compared -----------------------------------


def without_program_name(output: bytes, helper: Helper) -> bytes:
    """The usage line names argv[0] (Go: verbatim; ours: its basename): compare without it."""
    for name in (helper.path, os.path.basename(helper.path)):
        output = output.replace(name.encode(), b"<program>")
    return output


def hold(helper: Helper, calls: Sequence[Call]) -> list[tuple[int, bytes]]:
    answers = []
    for args, stdin in calls:
        result = helper(*args, stdin=stdin)
        answers.append((result.returncode, without_program_name(result.stdout, helper)))
    return answers


def assert_same_conversation(go: Helper, ours: Helper, calls: Sequence[Call]) -> list[tuple[int, bytes]]:
    """Both helpers, each on an empty keyring, give identical answers to every call."""
    keyring_session.delete_all_docker_items(go.env)
    go_answers = hold(go, calls)
    keyring_session.delete_all_docker_items(ours.env)
    our_results = [ours(*args, stdin=stdin) for args, stdin in calls]
    our_answers = [(r.returncode, without_program_name(r.stdout, ours)) for r in our_results]
    for (args, stdin), go_answer, our_answer, result in zip(calls, go_answers, our_answers, our_results):
        shown = stdin if len(stdin) <= 120 else stdin[:120] + b"..."
        assert our_answer == go_answer, f"{args} with stdin {shown!r}: Go {go_answer!r}, ours {our_answer!r}"
        assert result.stderr == b"", f"{args}: ours wrote to stderr: {result.stderr[:500]!r}"
    return go_answers


def store_message(server: str, username: str, secret: str) -> bytes:
    return json.dumps({"ServerURL": server, "Username": username, "Secret": secret}).encode()


def store_get_list(message: bytes, server: str = "reg.example") -> list[Call]:
    return [(("store",), message), (("get",), server.encode()), (("list",), b"")]


def stored(helper: Helper, server: str, username: str, secret: str) -> None:
    result = helper.store(server, username, secret)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result


def items_in_keyring(env: dict[str, str]) -> int:
    found = subprocess.run(
        ["secret-tool", "search", "--all", "xdg:schema", keyring_session.DOCKER_SCHEMA],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return sum(line.startswith("[/") for line in found.stdout.splitlines())


# -- store then get: the encoding of what comes back ---------------------------

ROUND_TRIPS = {
    "ascii": ("reg.example", "alice", "s3cret"),
    "unicode": ("ünïcødé.example", "ünïcødé-üser", "pässwörd-密码-🔑"),
    "html-escapes": ("reg.example", "a<b>&c", "x<y>z&amp;"),
    "line-and-paragraph-separators": ("reg.example", "u\u2028", "a\u2028b\u2029c"),
    "control-characters": ("reg.example", "ctl", "".join(map(chr, range(1, 32))) + "\x7f\x80\x9f"),
    "quotes-and-backslashes": ("reg.example", 'a"b', 'c\\d"e\\'),
    "identity-token-username": ("https://index.docker.io/v1/", "<token>", "eyJhbGciOiJSUzI1NiJ9.identity-token"),
    "docker-hub-url": ("https://index.docker.io/v1/", "alice", "s3cret"),
    "host-and-port": ("localhost:5000", "alice", "s3cret"),
    "whitespace-inside-values": ("reg.example", " spaced user ", " spaced secret \t"),
}


@on_every_secret_service
@pytest.mark.parametrize("server, username, secret", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_store_then_get_and_list_answer_like_go(
    go_helper: Helper, keyring_helper: Helper, server: str, username: str, secret: str
) -> None:
    answers = assert_same_conversation(
        go_helper, keyring_helper, store_get_list(store_message(server, username, secret), server)
    )
    assert answers[1][0] == 0, "the round trip itself must succeed"


def test_get_escapes_html_characters_and_separators_as_go_does(go_helper: Helper, keyring_helper: Helper) -> None:
    """The exact bytes, spelled out: `<token>` comes back as "\\u003ctoken\\u003e"."""
    answers = assert_same_conversation(
        go_helper, keyring_helper, store_get_list(store_message("reg.example", "<token>", "a<b>c&d\u2028e\u2029f"))
    )
    assert answers[1] == (
        0,
        b'{"ServerURL":"reg.example","Username":"\\u003ctoken\\u003e",'
        b'"Secret":"a\\u003cb\\u003ec\\u0026d\\u2028e\\u2029f"}\n',
    )


# -- get and erase: reading the server URL -------------------------------------


def test_get_of_an_unknown_server_is_not_found_like_go(go_helper: Helper, keyring_helper: Helper) -> None:
    answers = assert_same_conversation(go_helper, keyring_helper, [(("get",), b"unknown.example")])
    assert answers == [(1, NOT_FOUND)]


@on_every_secret_service
def test_erase_of_an_unknown_server_succeeds_silently_like_go(go_helper: Helper, keyring_helper: Helper) -> None:
    answers = assert_same_conversation(go_helper, keyring_helper, [(("erase",), b"unknown.example")])
    assert answers == [(0, b"")]


EMPTY_URLS = {
    "nothing": b"",
    "space": b" ",
    "newline": b"\n",
    "crlf": b"\r\n",
    "tabs-and-newlines": b"\t \n\t\r\n",
    "unicode-spaces": "\u00a0\u3000\u2003\u0085".encode(),
    "blank-lines": b"\n\n\n",
}


@pytest.mark.parametrize("action", ["get", "erase"])
@pytest.mark.parametrize("stdin", EMPTY_URLS.values(), ids=EMPTY_URLS.keys())
def test_an_empty_or_blank_server_url_is_refused_like_go(
    go_helper: Helper, keyring_helper: Helper, action: str, stdin: bytes
) -> None:
    answers = assert_same_conversation(go_helper, keyring_helper, [((action,), stdin)])
    assert answers == [(1, b"no credentials server URL\n")]


URL_SPELLINGS = {
    "crlf-terminated": b"reg.example\r\n",
    "lf-terminated": b"reg.example\n",
    "cr-only": b"reg.example\r",
    "split-over-two-lines": b"reg.\nexample",
    "split-over-crlf-lines": b"reg.\r\nexample\r\n",
    "two-crs": b"reg.example\r\r\n",
    "leading-blank-line": b"\r\nreg.example",
    "trailing-blank-lines": b"reg.example\n\n\n",
    "surrounding-whitespace": b"  reg.example \t\n",
    "unicode-spaces-around": "\u00a0reg.example\u2000".encode(),
    "vertical-tab": b"reg.example\x0b",
    "lf-then-cr": b"reg.example\n\r",
}


@pytest.mark.parametrize("stdin", URL_SPELLINGS.values(), ids=URL_SPELLINGS.keys())
def test_multi_line_and_crlf_input_to_get_is_read_like_go(
    go_helper: Helper, keyring_helper: Helper, stdin: bytes
) -> None:
    """Lines are joined without separator, one trailing CR per line dropped, then trimmed."""
    answers = assert_same_conversation(
        go_helper,
        keyring_helper,
        [
            (("store",), store_message("reg.example", "alice", "s3cret")),
            (("get",), stdin),
        ],
    )
    assert answers[1] == (0, b'{"ServerURL":"reg.example","Username":"alice","Secret":"s3cret"}\n')


# -- store: the JSON message ----------------------------------------------------

STORE_VARIANTS = {
    "lower-case-keys": b'{"serverurl":"reg.example","username":"u","secret":"p"}',
    "upper-case-keys": b'{"SERVERURL":"reg.example","USERNAME":"u","SECRET":"p"}',
    "mixed-case-keys": b'{"serverURL":"reg.example","uSeRnAmE":"u","SeCrEt":"p"}',
    "unicode-case-fold-key": '{"ServerURL":"reg.example","Username":"u","\u017fecret":"p"}'.encode(),
    "escaped-key": b'{"Server\\u0055RL":"reg.example","Username":"u","Secret":"p"}',
    "unknown-keys": b'{"ServerURL":"reg.example","Username":"u","Secret":"p","Extra":{"a":[1,2,null]},"n":1}',
    "duplicate-keys-last-wins": b'{"ServerURL":"x.example","ServerURL":"reg.example","Username":"a","username":"u","Secret":"p"}',  # noqa: E501
    "duplicate-across-case-last-wins": b'{"Secret":"p","secret":"q","ServerURL":"reg.example","Username":"u"}',
    "null-after-value-keeps-value": b'{"ServerURL":"reg.example","Username":"u","Secret":"p","Secret":null}',
    "trailing-garbage": b'{"ServerURL":"reg.example","Username":"u","Secret":"p"} trailing garbage {',
    "second-json-value-ignored": b'{"ServerURL":"reg.example","Username":"u","Secret":"p"}{"ServerURL":"x"}',
    "trailing-nul-bytes": b'{"ServerURL":"reg.example","Username":"u","Secret":"p"}\x00\x00',
    "leading-whitespace": b' \t\r\n {"ServerURL":"reg.example","Username":"u","Secret":"p"}',
    "docker-py-spacing": b'{"ServerURL": "reg.example", "Username": "u", "Secret": "p"}',
    "newline-terminated": b'{"ServerURL":"reg.example","Username":"u","Secret":"p"}\n',
    "crlf-split-message": b'{"ServerURL":"reg.example",\r\n"Username":"u",\n"Secret":"p"}\r\n',
    "newline-inside-a-string": b'{"ServerURL":"reg.\nexample","Username":"u","Secret":"p"}',
    "unicode-escapes": b'{"ServerURL":"reg.example","Username":"u","Secret":"\\u00e9\\ud83d\\ude00"}',
    "whitespace-only-server-url-is-kept": b'{"ServerURL":"  ","Username":"u","Secret":"p"}',
    "invalid-utf8-in-secret": b'{"ServerURL":"reg.example","Username":"u","Secret":"\xff\xfe a\xc0\xafb"}',
    "lone-surrogate-bytes-in-secret": b'{"ServerURL":"reg.example","Username":"u","Secret":"\xed\xa0\x80"}',
    "lone-surrogate-escape": b'{"ServerURL":"reg.example","Username":"u\\ud800","Secret":"\\ud800x"}',
    "reversed-surrogate-escapes": b'{"ServerURL":"reg.example","Username":"u","Secret":"\\udc00\\ud800"}',
    "high-surrogate-then-bmp-escape": b'{"ServerURL":"reg.example","Username":"u","Secret":"\\ud800\\u0041"}',
    "nesting-within-python-limits": b'{"x":'
    + b"[" * 500
    + b"]" * 500
    + b',"ServerURL":"reg.example","Username":"u","Secret":"p"}',
}


@pytest.mark.parametrize("message", STORE_VARIANTS.values(), ids=STORE_VARIANTS.keys())
def test_store_message_variants_are_read_like_go(go_helper: Helper, keyring_helper: Helper, message: bytes) -> None:
    answers = assert_same_conversation(go_helper, keyring_helper, store_get_list(message))
    assert answers[0] == (0, b""), "every variant is a valid store message"


@pytest.mark.parametrize(
    "invalid",
    [b"\xf0\x9f", b"\xe2\x82", b"\xed\xbf\xbf\xf0\x9f\x98"],
    ids=["truncated-4-byte-sequence", "truncated-3-byte-sequence", "surrogate-then-truncated"],
)
def test_invalid_utf8_in_a_store_message_becomes_one_replacement_character_per_byte(
    go_helper: Helper, keyring_helper: Helper, invalid: bytes
) -> None:
    """Go's decoder replaces every byte of an invalid sequence with its own U+FFFD.

    Python's errors="replace" uses one U+FFFD per maximal subpart, so a
    truncated multi-byte sequence would be stored as fewer characters than
    Go stores: the same login, a different secret.
    """
    message = b'{"ServerURL":"reg.example","Username":"u","Secret":"<' + invalid + b'>"}'
    answers = assert_same_conversation(go_helper, keyring_helper, store_get_list(message))
    assert answers[1][1].count("\ufffd".encode()) == len(invalid)


def wrong_type_cases() -> dict[str, bytes]:
    values = {
        "number": b"1.5e3",
        "negative-zero": b"-0",
        "true": b"true",
        "false": b"false",
        "array": b'["p"]',
        "object": b'{"p":1}',
    }
    cases = {}
    for field in ("ServerURL", "Username", "Secret"):
        for kind, value in values.items():
            fields = {"ServerURL": b'"reg.example"', "Username": b'"u"', "Secret": b'"p"', field: value}
            cases[f"{field}-{kind}"] = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()) + b"}"
    return cases


STORE_ERRORS = {
    "empty-server-url": b'{"ServerURL":"","Username":"u","Secret":"p"}',
    "empty-username": b'{"ServerURL":"reg.example","Username":"","Secret":"p"}',
    "both-empty-server-url-first": b'{"ServerURL":"","Username":"","Secret":"p"}',
    "empty-object": b"{}",
    "only-a-secret": b'{"Secret":"p"}',
    "null-username": b'{"ServerURL":"reg.example","Username":null,"Secret":"p"}',
    **wrong_type_cases(),
    "first-type-error-wins": b'{"ServerURL":[],"Username":{},"Secret":1}',
    "type-error-before-empty-checks": b'{"ServerURL":"","Username":"","Secret":1}',
    "type-error-in-a-later-duplicate": b'{"ServerURL":"reg.example","Username":"u","Secret":"p","Secret":1}',
    "top-level-null": b"null",
    "top-level-null-with-spaces": b" null ",
    "top-level-string": b'"reg.example"',
    "top-level-number": b"1",
    "top-level-negative-float": b"-1.5",
    "top-level-true": b"true",
    "top-level-false": b"false",
    "top-level-empty-array": b"[]",
    "top-level-array-of-object": b'[{"ServerURL":"reg.example","Username":"u","Secret":"p"}]',
    "leading-zero-reads-zero": b"01",
    # malformed and truncated JSON
    "empty-input": b"",
    "only-whitespace": b" ",
    "only-newlines": b"\n\n",
    "only-crlf": b"\r\n",
    "open-brace": b"{",
    "open-bracket": b"[",
    "unterminated-string": b'"abc',
    "truncated-after-key": b'{"ServerURL"',
    "truncated-after-colon": b'{"ServerURL":',
    "truncated-in-value": b'{"ServerURL":"reg',
    "truncated-after-value": b'{"a":1',
    "truncated-in-array": b"[1,",
    "truncated-message": b'{"ServerURL":"reg.example","Username":"u","Secret":"p"',
    "bare-word": b"xx",
    "missing-colon": b'{"a" 1}',
    "missing-comma-in-object": b'{"a":1 "b":2}',
    "missing-comma-in-array": b"[1 2]",
    "missing-comma-between-strings": b'["a" "b"]',
    "adjacent-strings-in-object": b'{"a":"b""c"}',
    "trailing-comma-in-object": b'{"a":1,}',
    "trailing-comma-in-array": b"[1,]",
    "lone-comma-in-object": b"{,}",
    "object-closed-by-bracket": b'{"a":1]',
    "array-closed-by-brace": b"[1}",
    "nested-mismatch": b'[{"a":1]',
    "unclosed-inner-array": b'{"a":[1,2}',
    "stray-closing-brace": b"}",
    "stray-closing-bracket": b"]",
    "single-quotes": b"{'a':1}",
    "unquoted-key": b"{a:1}",
    "nan": b"NaN",
    "nan-as-value": b'{"a":NaN}',
    "infinity": b"Infinity",
    "plus-sign": b"+1",
    "leading-dot": b".5",
    "control-character-in-string": b'{"a":"\x01"}',
    "control-character-in-key": b'{"\x01":1}',
    "unit-separator-in-string": b'{"a":"\x1f"}',
    "bad-escape": b'{"a":"\\x"}',
    "escaped-control-character": b'{"a":"\\\x01"}',
    "nul-byte": b"\x00",
    "del-byte": b"\x7f",
    "tab-before-value-and-garbage-after": b'\t{"a":1} x',
    "over-a-line-of-nesting": b"[" * 100000,
    "extra-closing-brace-ignored": b'{"a":1}}',
}


@pytest.mark.parametrize("message", STORE_ERRORS.values(), ids=STORE_ERRORS.keys())
def test_store_errors_are_worded_like_go(go_helper: Helper, keyring_helper: Helper, message: bytes) -> None:
    answers = assert_same_conversation(go_helper, keyring_helper, store_get_list(message))
    assert answers[0][0] == 1, "every message here is refused"
    assert answers[1:] == [(1, NOT_FOUND), (0, b"{}\n")], "a refused store leaves nothing behind"


KEY_STORE_ERRORS = {
    "empty-input": (b"", b"EOF\n"),
    "open-brace": (b"{", b"unexpected EOF\n"),
    "bare-word": (b"xx", b"invalid character 'x' looking for beginning of value\n"),
    "missing-colon": (b'{"a" 1}', b"invalid character '1' after object key\n"),
    "missing-comma-in-object": (b'{"a":1 "b":2}', b"invalid character '\"' after object key:value pair\n"),
    "missing-comma-in-array": (b"[1 2]", b"invalid character '2' after array element\n"),
    "both-empty": (b'{"ServerURL":"","Username":"","Secret":"p"}', b"no credentials server URL\n"),
    "empty-username": (b'{"ServerURL":"reg.example","Username":"","Secret":"p"}', b"no credentials username\n"),
    "number-secret": (
        b'{"ServerURL":"reg.example","Username":"u","Secret":1}',
        b"json: cannot unmarshal number into Go struct field Credentials.Secret of type string\n",
    ),
    "top-level-array": (b"[]", b"json: cannot unmarshal array into Go value of type credentials.Credentials\n"),
}


@pytest.mark.parametrize("message, answer", KEY_STORE_ERRORS.values(), ids=KEY_STORE_ERRORS.keys())
def test_the_key_store_errors_read_exactly(
    go_helper: Helper, keyring_helper: Helper, message: bytes, answer: bytes
) -> None:
    """The wording, spelled out, for the errors a person is most likely to meet."""
    assert assert_same_conversation(go_helper, keyring_helper, [(("store",), message)]) == [(1, answer)]


GO_WORDING_GAPS = {
    "truncated-null": b"nul",
    "truncated-true": b"tru",
    "single-letter-n": b"n",
    "bare-minus": b"-",
    "truncated-fraction": b"1.",
    "truncated-exponent": b"1e",
    "truncated-minus-in-object": b'{"a":-',
    "truncated-unicode-escape": b'{"a":"x\\u00',
    "misspelt-null": b"nulx",
    "misspelt-null-in-object": b'{"a":nulL}',
    "truncated-true-in-object": b'{"a":tru}',
    "minus-infinity": b"-Infinity",
    "minus-then-letter": b'{"a":-x}',
    "fraction-without-digits": b"1.e",
    "exponent-without-digits": b'{"a":1.5e}',
    "short-unicode-escape": b'{"a":"\\u12"}',
    "bad-hex-in-unicode-escape": b'{"a":"\\u12g4"}',
    "non-ascii-character": '{"a":é}'.encode(),
    "byte-order-mark": b"\xef\xbb\xbf{}",
    "invalid-utf8-byte": b"\xff",
    "beyond-go-max-depth": b"[\n" * 10001,
    "depth-go-accepts": b'{"x":'
    + b"[" * 2000
    + b"]" * 2000
    + b',"ServerURL":"reg.example","Username":"u","Secret":"p"}',
}


@pytest.mark.xfail(
    strict=True,
    reason=(
        "gojson words rare JSON syntax errors unlike Go: Go blames the byte where a literal, number or \\u escape"
        " goes wrong and quotes bytes as Latin-1 ('é' as 'Ã'), ours the value's first character and the decoded"
        " character; Go nests 10000 levels, ours about 1000"
    ),
)
@pytest.mark.parametrize("message", GO_WORDING_GAPS.values(), ids=GO_WORDING_GAPS.keys())
def test_rare_json_errors_are_worded_like_go(go_helper: Helper, keyring_helper: Helper, message: bytes) -> None:
    """Known gaps, pinned so that a fix shows up.

    Go reports an error inside a literal, number or \\u escape where it occurs
    ("invalid character 'x' in literal null (expecting 'l')", "unexpected EOF"
    for a truncated one); ours blames the literal's first character. Go quotes
    the offending *byte* as a Latin-1 rune ('é' is reported as 'Ã'); ours quotes
    the decoded character. Go nests up to 10000 levels and then says
    "invalid character '[' exceeded max depth"; ours stops near Python's
    recursion limit (~1000) with "exceeded max depth".
    """
    assert_same_conversation(go_helper, keyring_helper, store_get_list(message))


# -- the 64 KiB line limit -------------------------------------------------------
# Go reads stdin with bufio.Scanner (64 KiB buffer): a line of up to 65535 bytes
# (counting a trailing CR, not the LF) is read; 65536 bytes fail with
# "bufio.Scanner: token too long", whether or not a newline follows.

LINE_LIMIT_CASES = {
    "65535-bytes": b"a" * 65535,
    "65535-bytes-lf": b"a" * 65535 + b"\n",
    "65534-bytes-crlf": b"a" * 65534 + b"\r\n",
    "65535-bytes-crlf": b"a" * 65535 + b"\r\n",
    "65536-bytes": b"a" * 65536,
    "65536-bytes-lf": b"a" * 65536 + b"\n",
    "long-second-line": b"reg.example\n" + b"a" * 65536,
    "long-first-line": b"a" * 65536 + b"\nreg.example",
    "three-lines-just-under": (b"a" * 65535 + b"\n") * 3,
}


@pytest.mark.parametrize("action", ["get", "erase", "store"])
@pytest.mark.parametrize("stdin", LINE_LIMIT_CASES.values(), ids=LINE_LIMIT_CASES.keys())
def test_the_64k_line_limit_is_go_bufio_scanner(
    go_helper: Helper, keyring_helper: Helper, action: str, stdin: bytes
) -> None:
    answers = assert_same_conversation(go_helper, keyring_helper, [((action,), stdin)])
    too_long = max(len(line) for line in stdin.split(b"\n")) >= 65536
    assert (answers[0] == (1, b"bufio.Scanner: token too long\n")) == too_long


def store_line_of(length: int) -> bytes:
    head, tail = b'{"ServerURL":"reg.example","Username":"u","Secret":"', b'"}'
    return head + b"s" * (length - len(head) - len(tail)) + tail


@pytest.mark.parametrize(
    "length", [65535, 65536], ids=["65535-byte-message-is-stored", "65536-byte-message-is-refused"]
)
def test_a_store_message_on_one_line_meets_the_same_limit(
    go_helper: Helper, keyring_helper: Helper, length: int
) -> None:
    answers = assert_same_conversation(go_helper, keyring_helper, store_get_list(store_line_of(length)))
    if length == 65535:
        assert answers[0] == (0, b"") and answers[1][0] == 0
    else:
        assert answers[0] == (1, b"bufio.Scanner: token too long\n")


def test_a_long_secret_split_over_lines_is_stored_like_go(go_helper: Helper, keyring_helper: Helper) -> None:
    """Lines are joined: a 200 KB secret arrives whole when no single line is too long."""
    secret_lines = b"\n".join([b"s" * 60000] * 4)
    message = b'{"ServerURL":"reg.example",\n"Username":"u",\n"Secret":"' + secret_lines + b'"}\n'
    answers = assert_same_conversation(go_helper, keyring_helper, store_get_list(message))
    assert answers[1][0] == 0 and answers[1][1].count(b"s") >= 240000


# -- argv -------------------------------------------------------------------------

ARGV_CASES = {
    "no-arguments": (),
    "two-arguments": ("get", "extra"),
    "list-with-an-argument": ("list", "x"),
    "unknown-action": ("frob",),
    "empty-action": ("",),
    "upper-case-action": ("GET",),
    "action-with-trailing-space": ("get ",),
    "non-ascii-action": ("é",),
    "html-in-action": ("a<b>&",),
}


@pytest.mark.parametrize("args", ARGV_CASES.values(), ids=ARGV_CASES.keys())
def test_wrong_argv_is_answered_like_go(go_helper: Helper, keyring_helper: Helper, args: tuple[str, ...]) -> None:
    answers = assert_same_conversation(go_helper, keyring_helper, [(args, b"reg.example")])
    assert answers[0][0] == 1
    if len(args) != 1:
        assert answers == [(1, b"Usage: <program> <store|get|erase|list|version>\n")]
    else:
        assert answers == [(1, b"Unknown credential action `%s`\n" % args[0].encode())]


def test_list_of_an_empty_keyring_is_an_empty_object_like_go(go_helper: Helper, keyring_helper: Helper) -> None:
    assert assert_same_conversation(go_helper, keyring_helper, [(("list",), b"garbage on stdin")]) == [(0, b"{}\n")]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_flags_print_usage_and_succeed(keyring_helper: Helper, flag: str) -> None:
    """Upstream >= 0.8 behaviour, documented in docs/protocol.md section 1.

    Go 0.6.4 predates it and answers "Unknown credential action `--help`",
    exit 1; a user asking for help deserves the usage line and success.
    """
    result = keyring_helper(flag)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        b"Usage: docker-credential-keyring <store|get|erase|list|version>\n",
        b"",
    )


@pytest.mark.parametrize("flag", ["version", "--version", "-v"])
def test_version_prints_one_line_naming_the_program_and_succeeds(
    go_helper: Helper, keyring_helper: Helper, flag: str
) -> None:
    """Upstream >= 0.8 format `<name> (<package>) <version>`, and the flags exit 0.

    Go 0.6.4 prints the bare `0.6.4` for `version` and rejects `--version`/`-v`
    (exit 1); scripts only rely on exit 0 and a single line.
    """
    result = keyring_helper(flag)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"docker-credential-keyring (credbridge) {__version__}\n".encode(),
        b"",
    )
    assert go_helper("version").stdout == b"0.6.4\n", "the reference is the Debian 0.6.4 build"


def test_an_action_containing_a_newline_is_still_one_line(go_helper: Helper, keyring_helper: Helper) -> None:
    """Clients read the first line of an error: ours folds the newline, Go prints two lines."""
    assert go_helper("x\ny").stdout == b"Unknown credential action `x\ny`\n"
    result = keyring_helper("x\ny")
    assert (result.returncode, result.stdout, result.stderr) == (1, b"Unknown credential action `x y`\n", b"")


# -- list and display labels -------------------------------------------------------


@on_every_secret_service
def test_list_agrees_on_items_written_by_either_helper(go_helper: Helper, keyring_helper: Helper) -> None:
    """Ours writes the display label == ServerURL, as Go 0.6.4 does, so Go's label-keyed list agrees."""
    stored(go_helper, "go-written.example", "alice", "1")
    stored(keyring_helper, "ours-written.example:5000", "bob", "2")
    stored(keyring_helper, "https://index.docker.io/v1/", "<token>", "3")
    go_list, our_list = go_helper.list(), keyring_helper.list()
    assert (our_list.returncode, our_list.stdout, our_list.stderr) == (go_list.returncode, go_list.stdout, b"")
    assert our_list.stdout == (
        b'{"go-written.example":"alice","https://index.docker.io/v1/":"\\u003ctoken\\u003e",'
        b'"ours-written.example:5000":"bob"}\n'
    )


def test_list_of_more_items_than_the_bus_lets_a_client_await_agrees_with_go(
    go_helper: Helper, keyring_helper: Helper
) -> None:
    """The private bus keeps dbus-daemon's built-in limit of 128 awaited replies per connection (Debian's
    session bus allows 50000): our pipelined reads must stay under it, or most items go missing."""
    servers = {f"many{number:03d}.example": f"user{number}" for number in range(300)}
    with keyring_session.docker_items(keyring_helper.env, servers):
        go_list, our_list = go_helper.list(), keyring_helper.list()
    assert (our_list.returncode, our_list.stderr) == (0, b"")
    assert len(json.loads(our_list.stdout)) == 300
    assert our_list.stdout == go_list.stdout


@on_every_secret_service
def test_list_keys_a_go_09_item_by_its_server_not_its_display_label_and_erases_it(
    go_helper: Helper, keyring_helper: Helper
) -> None:
    """The documented improvement: Go >= 0.9 labels items `Registry credentials for <url>`.

    Go's list reports that label as the key, which no `get` can find;
    ours keys on the `server` attribute, so list and get meet.
    """
    subprocess.run(
        [
            "secret-tool",
            "store",
            "--label=Registry credentials for reg.example",
            "label",
            "Docker Credentials",
            "server",
            "reg.example",
            "username",
            "u",
            "docker_cli",
            "1",
            "xdg:schema",
            "io.docker.Credentials",
        ],
        input=b"pw",
        env=keyring_helper.env,
        check=True,
        timeout=30,
    )
    result = keyring_helper.list()
    assert (result.returncode, result.stdout, result.stderr) == (0, b'{"reg.example":"u"}\n', b"")
    assert keyring_helper.get("reg.example").stdout == b'{"ServerURL":"reg.example","Username":"u","Secret":"pw"}\n'
    assert go_helper.list().stdout == b'{"Registry credentials for reg.example":"u"}\n', "why it is an improvement"
    erased = keyring_helper.erase("reg.example")
    assert (erased.returncode, erased.stdout, erased.stderr) == (0, b"", b"")
    assert items_in_keyring(keyring_helper.env) == 0


# -- interoperation on one keyring -------------------------------------------------


@on_every_secret_service
def test_an_item_stored_by_go_is_read_listed_and_erased_by_ours(go_helper: Helper, keyring_helper: Helper) -> None:
    stored(go_helper, "reg.example", "alice", "from-go <&>")
    go_get = go_helper.get("reg.example")
    our_get = keyring_helper.get("reg.example")
    assert (our_get.returncode, our_get.stdout, our_get.stderr) == (0, go_get.stdout, b"")
    assert keyring_helper.list().stdout == go_helper.list().stdout == b'{"reg.example":"alice"}\n'
    erased = keyring_helper.erase("reg.example")
    assert (erased.returncode, erased.stdout, erased.stderr) == (0, b"", b"")
    assert go_helper.get("reg.example").stdout == NOT_FOUND
    assert keyring_helper.get("reg.example").stdout == NOT_FOUND
    assert go_helper.list().stdout == b"{}\n"


@on_every_secret_service
def test_an_item_stored_by_ours_is_read_listed_and_erased_by_go(go_helper: Helper, keyring_helper: Helper) -> None:
    stored(keyring_helper, "reg.example", "<token>", "from-ours \u2028 ünï")
    our_get = keyring_helper.get("reg.example")
    go_get = go_helper.get("reg.example")
    assert (go_get.returncode, go_get.stdout) == (0, our_get.stdout)
    assert go_helper.list().stdout == keyring_helper.list().stdout == b'{"reg.example":"\\u003ctoken\\u003e"}\n'
    erased = go_helper.erase("reg.example")
    assert (erased.returncode, erased.stdout) == (0, b"")
    assert keyring_helper.get("reg.example").stdout == NOT_FOUND
    assert go_helper.get("reg.example").stdout == NOT_FOUND
    assert keyring_helper.list().stdout == b"{}\n"


@on_every_secret_service
def test_ours_overwrites_an_item_go_stored_and_go_reads_the_new_secret(
    go_helper: Helper, keyring_helper: Helper
) -> None:
    stored(go_helper, "reg.example", "alice", "old")
    stored(keyring_helper, "reg.example", "alice", "new")
    assert go_helper.get("reg.example").stdout == b'{"ServerURL":"reg.example","Username":"alice","Secret":"new"}\n'
    assert items_in_keyring(keyring_helper.env) == 1


@on_every_secret_service
def test_ours_erases_every_username_go_kept_for_a_server(go_helper: Helper, keyring_helper: Helper) -> None:
    """Go keeps one item per username; erase must remove them all, as Go's erase does."""
    stored(go_helper, "reg.example", "alice", "a")
    stored(go_helper, "reg.example", "bob", "b")
    assert items_in_keyring(go_helper.env) == 2
    assert keyring_helper.erase("reg.example").returncode == 0
    assert go_helper.get("reg.example").stdout == NOT_FOUND
    assert items_in_keyring(go_helper.env) == 0


@on_every_secret_service
def test_every_answer_names_the_latest_login_for_a_server_go_stored_twice(
    go_helper: Helper, keyring_helper: Helper
) -> None:
    """Go keeps one item per username; ours must then consistently answer with the latest login.

    docker CLI lists, then gets each key; podman asks for `docker.io` what
    docker stored as `https://index.docker.io/v1/`. `get` by the exact key,
    `get` under another spelling of the registry, and `list` must all
    describe the same credential, whatever order the Secret Service returns
    items in. Tried with both orders of login.
    """
    for first, second in (("alice", "bob"), ("bob", "alice")):
        keyring_session.delete_all_docker_items(go_helper.env)
        stored(go_helper, "reg.example", first, f"{first}-secret")
        time.sleep(1.1)  # the Secret Service's Modified time has one-second resolution
        stored(go_helper, "reg.example", second, f"{second}-secret")
        logins = f"(logins: {first}, then {second})"
        exact = json.loads(keyring_helper.get("reg.example").stdout)
        assert (exact["Username"], exact["Secret"]) == (second, f"{second}-secret"), f"get by the exact key {logins}"
        other_spelling = json.loads(keyring_helper.get("https://reg.example").stdout)
        assert (other_spelling["Username"], other_spelling["Secret"]) == (second, f"{second}-secret"), (
            f"get under another spelling answered {other_spelling['Username']!r} {logins}"
        )
        listed = json.loads(keyring_helper.list().stdout)
        assert listed == {"reg.example": second}, f"list answered {listed['reg.example']!r} {logins}"


# -- where ours deliberately differs -------------------------------------------------


@on_every_secret_service
def test_a_second_username_replaces_the_first_unlike_go(go_helper: Helper, keyring_helper: Helper) -> None:
    """Ours replaces, Go keeps both items and its `get` then answers with either one.

    A user who logs in to a registry as someone else expects that login to
    be used from then on.
    """
    stored(go_helper, "reg.example", "alice", "a")
    stored(go_helper, "reg.example", "bob", "b")
    assert items_in_keyring(go_helper.env) == 2, "Go keeps both"
    keyring_session.delete_all_docker_items(go_helper.env)
    stored(keyring_helper, "reg.example", "alice", "a")
    stored(keyring_helper, "reg.example", "bob", "b")
    assert items_in_keyring(keyring_helper.env) == 1
    assert keyring_helper.get("reg.example").stdout == b'{"ServerURL":"reg.example","Username":"bob","Secret":"b"}\n'
    assert keyring_helper.list().stdout == b'{"reg.example":"bob"}\n'


@on_every_secret_service
def test_an_empty_secret_is_returned_unlike_go(go_helper: Helper, keyring_helper: Helper) -> None:
    """docs/protocol.md: an empty Secret is accepted. Go stores it, but its get then says not found."""
    stored(go_helper, "reg.example", "alice", "")
    assert go_helper.get("reg.example").stdout == NOT_FOUND
    result = keyring_helper.get("reg.example")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        b'{"ServerURL":"reg.example","Username":"alice","Secret":""}\n',
        b"",
    )


@on_every_secret_service
def test_a_nul_in_the_secret_is_kept_unlike_go(go_helper: Helper, keyring_helper: Helper) -> None:
    """Go hands the secret to libsecret as a C string and silently cuts it at the NUL.

    Ours stores the bytes as given. (Go's get cannot read such an item back:
    libsecret refuses text with a NUL in it.)
    """
    stored(go_helper, "reg.example", "alice", "ab\0cd")
    assert go_helper.get("reg.example").stdout == b'{"ServerURL":"reg.example","Username":"alice","Secret":"ab"}\n'
    keyring_session.delete_all_docker_items(go_helper.env)
    stored(keyring_helper, "reg.example", "alice", "ab\0cd")
    result = keyring_helper.get("reg.example")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        b'{"ServerURL":"reg.example","Username":"alice","Secret":"ab\\u0000cd"}\n',
        b"",
    )


BAD_URLS = {
    "invalid-utf8": (b"\xff", b"the server URL is not valid UTF-8\n"),
    "lone-surrogate-bytes": (b"reg.\xed\xa0\x80example", b"the server URL is not valid UTF-8\n"),
    "nul-inside": (b"reg\x00.example", b"the server URL contains a NUL byte\n"),
    "nul-at-end": (b"reg.example\x00", b"the server URL contains a NUL byte\n"),
}


@pytest.mark.parametrize("action", ["get", "erase"])
@pytest.mark.parametrize("stdin, answer", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_an_unusable_server_url_is_a_clean_error_unlike_go(
    go_helper: Helper, keyring_helper: Helper, action: str, stdin: bytes, answer: bytes
) -> None:
    """No item can have such a server attribute (D-Bus strings are NUL-free UTF-8).

    Go answers not found (get) or success (erase), letting libsecret
    warnings through on stderr for invalid UTF-8; ours says what is wrong
    with the input, on stdout, and nothing on stderr.
    """
    go = go_helper(action, stdin=stdin)
    assert go.returncode == (1 if action == "get" else 0)
    result = keyring_helper(action, stdin=stdin)
    assert (result.returncode, result.stdout, result.stderr) == (1, answer, b"")
