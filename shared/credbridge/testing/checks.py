"""The protocol contract, one plain function a check, raising AssertionError that says what failed.

What any docker-credential-* program must answer, as Go's docker-credential-helpers answer it
(docs/protocol.md section 1): the same wording, exit codes, encoding and exact-key lookups. What
credbridge adds on top (one login a server, other spellings of a registry, erase of an absent
server succeeding) is its own policy and tested in tests/, not here. Read-only checks only ask;
writing checks store throwaway logins on reserved `.invalid` hosts, which `Conversation.clean_up`
erases whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from typing import Callable, Optional

from credbridge.gojson import encode_credentials
from credbridge.helperclient import HELPER_TIMEOUT_SECONDS
from credbridge.testing.calls import Answer, HelperCommand, call

NOT_FOUND = b"credentials not found in native keychain\n"
USAGE_END = b" <store|get|erase|list|version>\n"
#: Every throwaway login lives under this reserved (RFC 2606) domain, which no registry can have.
CHECK_DOMAIN = "credbridge-check.invalid"
LARGE_SECRET_CHARACTERS = 16 * 1024
#: How much of an answer's first line a message quotes: enough for a login with its Secret hidden.
SHOWN_CHARACTERS = 160


class ContractFailure(AssertionError):
    """A check's verdict: the message says what the helper answered instead, without any secret."""


class Conversation:
    """One run of checks against one helper: its calls, and the throwaway logins still to erase."""

    def __init__(self, command: HelperCommand, timeout: float = HELPER_TIMEOUT_SECONDS) -> None:
        self.command = command
        self.timeout = timeout
        self.run_id = secrets.token_hex(4)
        self.throwaways: list[str] = []
        self.secrets: set[str] = set()

    def call(self, *args: str, stdin: Optional[bytes] = b"") -> Answer:
        return call(self.command, args, stdin, self.timeout)

    def server(self, label: str, scheme: str = "https://") -> str:
        """A server URL no one else uses: this run's, under the reserved domain."""
        return f"{scheme}{label}-{self.run_id}.{CHECK_DOMAIN}"

    def secret(self, text: str) -> str:
        """`text` made unique to this run, and kept out of every message."""
        value = f"{text}-{secrets.token_hex(8)}"
        self.secrets.add(value)
        return value

    def store(self, server: str, username: str, secret: str) -> Answer:
        if server not in self.throwaways:  # before the call: a store cut short may have written
            self.throwaways.append(server)
        self.secrets.add(secret)
        message = {"ServerURL": server, "Username": username, "Secret": secret}
        return self.call("store", stdin=json.dumps(message).encode())

    def stored(self, server: str, username: str, secret: str) -> None:
        self.expect(self.store(server, username, secret), 0, b"", "store")

    def clean_up(self) -> list[str]:
        """Erase every throwaway login; returns those `list` still shows (left behind)."""
        if not self.throwaways:
            return []
        for server in self.throwaways:
            with contextlib.suppress(AssertionError):  # one erase timing out must not keep the rest
                self.call("erase", stdin=server.encode())
        listed = self.listed()
        left = [server for server in self.throwaways if server in listed]
        self.throwaways = left
        return left

    def listed(self) -> dict[str, str]:
        answer = self.call("list", stdin=None)
        self.expect_exit(answer, 0, "list")
        try:
            listed = json.loads(answer.stdout)
        except ValueError:
            listed = None
        if not isinstance(listed, dict) or not all(isinstance(value, str) for value in listed.values()):
            raise ContractFailure(f"list: expected a JSON object of server -> username, got {self.described(answer)}")
        return listed

    def expect_exit(self, answer: Answer, exit_code: int, what: str) -> None:
        if answer.exit_code != exit_code or answer.stderr:
            raise ContractFailure(
                f"{what}: expected exit {exit_code} and nothing on stderr, got {self.described(answer)}"
            )

    def expect(self, answer: Answer, exit_code: int, stdout: bytes, what: str) -> None:
        """Exactly this exit code and stdout, nothing on stderr."""
        if (answer.exit_code, answer.stdout, answer.stderr) != (exit_code, stdout, b""):
            raise ContractFailure(
                f"{what}: expected exit {exit_code} and {self.shown(stdout)}, got {self.described(answer)}"
            )

    def expect_not_found(self, answer: Answer, what: str) -> None:
        """Go's not-found line and exit 1; or an empty login and exit 0, as Go's pass 0.6.4 answers
        (docker CLI and containers/image read both as `no login here`)."""
        if (answer.exit_code, answer.stdout, answer.stderr) == (1, NOT_FOUND, b""):
            return
        if answer.exit_code == 0 and not answer.stderr and _is_empty_login(answer.stdout):
            return
        raise ContractFailure(
            f"{what}: expected not found (exit 1 and {self.shown(NOT_FOUND)}), got {self.described(answer)}"
        )

    def expect_credentials(self, server: str, username: str, secret: str, asked: Optional[str] = None) -> None:
        """`get` of `asked` (default: `server`) answers this login, in Go's exact encoding."""
        asked = server if asked is None else asked
        answer = self.call("get", stdin=asked.encode())
        expected = encode_credentials(server, username, secret)
        if (answer.exit_code, answer.stdout, answer.stderr) == (0, expected, b""):
            return
        if answer.exit_code == 0 and not answer.stderr:
            raise ContractFailure(f"get: the answer differs from what was stored: {_difference(answer, expected)}")
        raise ContractFailure(f"get: expected exit 0 and the stored login, got {self.described(answer)}")

    def described(self, answer: Answer) -> str:
        text = f"exit {answer.exit_code} and {self.shown(answer.stdout)}"
        return f"{text}; {_stderr_described(answer.stderr)}" if answer.stderr else text

    def shown(self, output: bytes) -> str:
        """stdout as a person may read it: its first line, any Secret hidden."""
        if not output:
            return "nothing on stdout"
        text = output.decode("utf-8", "replace")
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            hidden = {key: "<hidden>" if key.lower() == "secret" else item for key, item in value.items()}
            text = json.dumps(hidden, ensure_ascii=False)
        elif "secret" in text.lower():  # broken JSON around what may be a user's secret
            return "an answer naming a secret (not shown)"
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "<secret>")
        lines = text.splitlines() or [""]
        first = lines[0] if len(lines[0]) <= SHOWN_CHARACTERS else lines[0][:SHOWN_CHARACTERS] + "..."
        more = f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else ""
        return f"{first!r}{more}"


def _is_empty_login(output: bytes) -> bool:
    try:
        answer = json.loads(output)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("Username") == "" and answer.get("Secret") == ""


def _difference(answer: Answer, expected: bytes) -> str:
    """Which fields differ, never their values (a Secret may be the user's)."""
    try:
        got = json.loads(answer.stdout)
    except ValueError:
        return "not JSON"
    if not isinstance(got, dict):
        return "not a JSON object"
    wanted = json.loads(expected)
    fields = [name for name in wanted if got.get(name) != wanted[name]]
    if fields:
        return f"{', '.join(fields)} not as stored"
    return "the same values, not in Go's encoding (compact, fields in order, <>& escaped, newline)"


def _stderr_described(stderr: bytes) -> str:
    """What stderr holds, by kind: a helper's stderr may echo its input, so never its text."""
    if b"Traceback (most recent call last)" in stderr:
        return "a Python traceback on stderr"
    if b"panic:" in stderr and b"goroutine" in stderr:
        return "a Go panic on stderr"
    return f"{len(stderr.splitlines()) or 1} line(s) on stderr"


Check = Callable[[Conversation], None]
READ_ONLY: list[Check] = []
WRITING: list[Check] = []


def _read_only(check: Check) -> Check:
    READ_ONLY.append(check)
    return check


def _writing(check: Check) -> Check:
    WRITING.append(check)
    return check


def title(check: Check) -> str:
    return check.__name__.replace("_", " ")


# -- read-only: questions any installed helper can be asked ----------------------------------------


@_read_only
def version_answers_one_line(helper: Conversation) -> None:
    answer = helper.call("version")
    helper.expect_exit(answer, 0, "version")
    if not answer.stdout.strip() or answer.stdout.count(b"\n") != 1 or not answer.stdout.endswith(b"\n"):
        raise ContractFailure(f"version: expected one line, got {helper.shown(answer.stdout)}")


@_read_only
def list_answers_a_json_object(helper: Conversation) -> None:
    helper.listed()


@_read_only
def list_does_not_read_stdin(helper: Conversation) -> None:
    """docker-py leaves its own stdin attached to `list`: a helper reading it waits forever."""
    helper.expect_exit(helper.call("list", stdin=None), 0, "list with stdin left open")


@_read_only
def get_of_a_server_never_stored_is_not_found(helper: Conversation) -> None:
    helper.expect_not_found(helper.call("get", stdin=helper.server("never-stored").encode()), "get")


@_read_only
def get_of_an_empty_server_url_is_refused(helper: Conversation) -> None:
    helper.expect(helper.call("get", stdin=b""), 1, b"no credentials server URL\n", "get of an empty URL")


@_read_only
def an_unknown_action_is_refused(helper: Conversation) -> None:
    helper.expect(
        helper.call("credbridge-check"),
        1,
        b"Unknown credential action `credbridge-check`\n",
        "an unknown action",
    )


@_read_only
def a_call_without_an_action_shows_the_usage(helper: Conversation) -> None:
    answer = helper.call()
    if (answer.exit_code, answer.stderr) != (1, b"") or not (
        answer.stdout.startswith(b"Usage: ") and answer.stdout.endswith(USAGE_END)
    ):
        raise ContractFailure(
            f"no action: expected exit 1 and 'Usage: PROGRAM <store|get|erase|list|version>', "
            f"got {helper.described(answer)}"
        )


# -- writing: throwaway logins, erased by Conversation.clean_up ------------------------------------


def _round_trip(helper: Conversation, label: str, username: str, secret_text: str) -> None:
    server, secret = helper.server(label), helper.secret(secret_text)
    helper.stored(server, username, secret)
    helper.expect_credentials(server, username, secret)


@_writing
def store_then_get_answers_exactly_what_was_stored(helper: Conversation) -> None:
    _round_trip(helper, "round-trip", "alice", "s3cret")


@_writing
def list_names_a_stored_server_with_its_username(helper: Conversation) -> None:
    server = helper.server("listed")
    helper.stored(server, "alice", helper.secret("s3cret"))
    if helper.listed().get(server) != "alice":
        raise ContractFailure("list: the stored server is missing, or not with its username")


@_writing
def store_again_replaces_the_secret(helper: Conversation) -> None:
    server, new = helper.server("overwritten"), helper.secret("new")
    helper.stored(server, "alice", helper.secret("old"))
    helper.stored(server, "alice", new)
    helper.expect_credentials(server, "alice", new)


@_writing
def erase_removes_the_login(helper: Conversation) -> None:
    server = helper.server("erased")
    helper.stored(server, "alice", helper.secret("s3cret"))
    helper.expect(helper.call("erase", stdin=server.encode()), 0, b"", "erase")
    helper.expect_not_found(helper.call("get", stdin=server.encode()), "get after erase")
    if server in helper.listed():
        raise ContractFailure("list: the erased server is still listed")


@_writing
def unicode_values_survive_verbatim(helper: Conversation) -> None:
    _round_trip(helper, "unicode", "ünïcødé-üser", "pässwörd-密码-🔑")


@_writing
def json_special_characters_survive_verbatim(helper: Conversation) -> None:
    """`<token>` is how docker marks an identity token; Go escapes <, > and & in what it answers."""
    _round_trip(helper, "json-special", "<token>", '"quotes" \\ <html> & \u2028\u2029 \t tab')


@_writing
def a_large_secret_survives_verbatim(helper: Conversation) -> None:
    """Cloud registries hand out tokens of several kilobytes."""
    _round_trip(helper, "large", "alice", "t" * LARGE_SECRET_CHARACTERS)


@_writing
def a_lookalike_server_never_gets_the_login(helper: Conversation) -> None:
    server = helper.server("lookalike", scheme="")
    helper.stored(server, "alice", helper.secret("s3cret"))
    host = server.partition(".")[0]
    for lookalike in (
        f"{server}.evil.invalid",
        f"evil{server}",
        f"{server}:5001",
        f"{server}/other/path",
        f"user@{server}",
        f"evil.invalid/{server}",
        server.replace(host, host[:-1], 1),
    ):
        helper.expect_not_found(helper.call("get", stdin=lookalike.encode()), f"get of the lookalike {lookalike}")


@_writing
def two_spellings_stored_apart_each_answer_their_own(helper: Conversation) -> None:
    """What was stored under one exact key is what that key answers."""
    bare = helper.server("spellings", scheme="")
    with_scheme = f"https://{bare}"
    bare_secret, scheme_secret = helper.secret("bare"), helper.secret("with-scheme")
    helper.stored(with_scheme, "alice", scheme_secret)
    helper.stored(bare, "bob", bare_secret)
    helper.expect_credentials(bare, "bob", bare_secret)
    helper.expect_credentials(with_scheme, "alice", scheme_secret)


@_writing
def get_reads_a_server_url_ended_by_a_newline(helper: Conversation) -> None:
    """Go joins stdin's lines and trims the URL: `echo URL | helper get` finds the login."""
    server, secret = helper.server("newline"), helper.secret("s3cret")
    helper.stored(server, "alice", secret)
    for ending in ("\n", "\r\n"):
        helper.expect_credentials(server, "alice", secret, asked=server + ending)


@_writing
def store_without_a_username_is_refused_and_stores_nothing(helper: Conversation) -> None:
    server = helper.server("no-username")
    helper.expect(
        helper.store(server, "", helper.secret("s3cret")),
        1,
        b"no credentials username\n",
        "store without a username",
    )
    helper.expect_not_found(helper.call("get", stdin=server.encode()), "get after the refused store")


@_writing
def store_without_a_server_url_is_refused(helper: Conversation) -> None:
    message = json.dumps({"ServerURL": "", "Username": "alice", "Secret": helper.secret("s3cret")}).encode()
    helper.expect(
        helper.call("store", stdin=message),
        1,
        b"no credentials server URL\n",
        "store without a server URL",
    )


@_writing
def store_of_truncated_json_is_refused_as_go_words_it(helper: Conversation) -> None:
    helper.expect(
        helper.call("store", stdin=b'{"ServerURL":'),
        1,
        b"unexpected EOF\n",
        "store of truncated JSON",
    )


def run_check(helper: Conversation, check: Check) -> None:
    """Run one check, then erase its throwaway logins; one left behind fails a check that passed
    (after a failure, or an interrupt, the erasing still runs and the first verdict stands)."""
    try:
        check(helper)
    except BaseException:
        with contextlib.suppress(AssertionError):
            helper.clean_up()
        raise
    left = helper.clean_up()
    if left:
        raise ContractFailure(f"{len(left)} throwaway login(s) still listed after erase")
