"""The docker credential-helper protocol, independent of any store.

`serve` turns (argv, stdin bytes) into (stdout bytes, exit code) as the Go helpers do
(docs/protocol.md section 1), noting what it served for the audit log: a pure function, so one
code serves in process and in the agent.
"""

from __future__ import annotations

import codecs
from typing import Callable, Mapping, NamedTuple, Optional

from credbridge import __version__, debuglog
from credbridge.errors import CredentialsNotFound, HelperError, MissingServerURL, MissingUsername, Refused
from credbridge.gojson import decode_credentials, encode_credentials, encode_string_map
from credbridge.store import Credentials, CredentialStore

USAGE_ACTIONS = "<store|get|erase|list|version>"
#: Set to 1 by credbridge's own calls (migrate, exec): `list` then names endpoint tokens too.
LIST_TOKENS_VARIABLE = "CREDBRIDGE_LIST_TOKENS"
#: bufio.Scanner's default limit: the Go helpers refuse longer input lines.
MAX_LINE_BYTES = 64 * 1024
# Go's strings.TrimSpace: Unicode White_Space (Python's isspace adds \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501


# Go's decoder replaces each invalid byte by U+FFFD; Python's "replace" one per bad sequence.
codecs.register_error("credbridge-go-replace", lambda error: ("\ufffd" * (error.end - error.start), error.end))


class Reply(NamedTuple):
    output: bytes
    exit_code: int


class Served(NamedTuple):
    """What a call did, for the audit log (credbridge.audit): never a username, never a secret."""

    action: str  # get | store | erase | list; "" for version, help and malformed calls
    server_url: str  # as the client sent it; "" for list, or when it could not be read
    outcome: str  # found | ok | not found | denied | error
    source: str  # a router's: the store behind it that answered (or would have); "" for any other store
    consulted: tuple[str, ...] = ()  # a router's: every store behind it the call asked


AUDITED_ACTIONS = ("get", "store", "erase", "list")


def serve(
    program: str,
    args: list[str],
    stdin: bytes,
    open_store: Callable[[], CredentialStore],
    list_tokens: bool = False,
) -> tuple[Reply, Served]:
    """Run one helper invocation: its reply, and what was served; never raises."""
    action = args[0] if len(args) == 1 and args[0] in AUDITED_ACTIONS else ""
    noted = {"server_url": ""}
    opened: list[CredentialStore] = []

    def opening() -> CredentialStore:
        opened.append(open_store())
        return opened[-1]

    failure: Optional[Exception] = None
    try:
        reply = Reply(_dispatch(program, args, stdin, opening, noted, list_tokens), 0)
    except HelperError as error:
        debuglog.log("answer: error", kind=type(error).__name__, message=str(error))
        reply, failure = Reply(_one_line(str(error)), 1), error
    except Exception as error:  # the guard: no traceback ever reaches the user
        debuglog.log("answer: unexpected error", kind=type(error).__name__)
        reply, failure = Reply(_one_line(describe_unexpected(error)), 1), error
    return reply, served(action, noted["server_url"], failure, opened[0] if opened else None)


def served(action: str, server_url: str, failure: Optional[Exception], store: Optional[CredentialStore]) -> Served:
    """What a call to `store` did, failed with `failure` or not: also for a credbridge command's own calls
    (credbridge.audit.by_command). A router names the store behind it (RouterStore.answered_by, .consulted)."""
    if failure is None:
        outcome = "found" if action == "get" else "ok"
    elif isinstance(failure, CredentialsNotFound):
        outcome = "not found"
    else:
        outcome = "denied" if isinstance(failure, Refused) else "error"
    source, consulted = getattr(store, "answered_by", ""), tuple(getattr(store, "consulted", ()))
    return Served(action, server_url, outcome, source, consulted)


def describe_unexpected(error: BaseException) -> str:
    """A secret-free line for an error no store anticipated: type and OS cause only."""
    detail = f": {error.strerror}" if isinstance(error, OSError) and error.strerror else ""
    return f"credbridge: unexpected {type(error).__name__}{detail} (please report this)"


def _dispatch(
    program: str,
    args: list[str],
    stdin: bytes,
    open_store: Callable[[], CredentialStore],
    noted: dict[str, str],
    list_tokens: bool,
) -> bytes:
    """The answer; `noted` gets the server URL the call names, for the audit log."""
    if len(args) != 1:
        raise HelperError(f"Usage: {program} {USAGE_ACTIONS}")
    action = args[0]
    debuglog.log("action", program=program, action=action, stdin_bytes=len(stdin))
    if action in ("version", "--version", "-v"):
        return f"{program} (credbridge) {__version__}\n".encode()
    if action in ("help", "--help", "-h"):
        return f"Usage: {program} {USAGE_ACTIONS}\n".encode()
    if action == "store":
        fields = decode_credentials(_joined_lines(stdin))
        if not fields["ServerURL"]:
            raise MissingServerURL()
        if not fields["Username"]:
            raise MissingUsername()
        noted["server_url"] = fields["ServerURL"]
        for name, label in (("ServerURL", "server URL"), ("Username", "username")):
            if "\0" in fields[name]:
                raise HelperError(f"the {label} contains a NUL byte")
        debuglog.log("store", server=fields["ServerURL"], username=fields["Username"])
        open_store().store(Credentials(fields["ServerURL"], fields["Username"], fields["Secret"]))
        return b""
    if action == "get":
        server_url = noted["server_url"] = _server_url(stdin)
        debuglog.log("get", server=server_url)
        found = open_store().get(server_url)
        debuglog.log("answer: found", username=found.username)
        return encode_credentials(server_url, found.username, found.secret)
    if action == "erase":
        server_url = noted["server_url"] = _server_url(stdin)
        debuglog.log("erase", server=server_url)
        open_store().erase(server_url)
        return b""
    if action == "list":
        listed = open_store().list()
        if not list_tokens:
            listed = _registries_only(listed)
        debuglog.log("answer: list", servers=len(listed))
        return encode_string_map(listed)
    raise HelperError(f"Unknown credential action `{action}`")


def _registries_only(listed: dict[str, str]) -> dict[str, str]:
    """docker build sends the daemon every login `list` names, podman logout --all erases each one:
    an Apptainer endpoint token or keyserver login is neither's (docs/protocol.md section 1)."""
    from credbridge.files.remotetokens import is_remote_key

    return {server: username for server, username in listed.items() if not is_remote_key(server)}


def list_tokens_asked(env: Mapping[str, str]) -> bool:
    return env.get(LIST_TOKENS_VARIABLE) == "1"


def _scanned(stdin: bytes) -> bytes:
    """Go's bufio.Scanner loop: lines joined without separator, one trailing CR dropped each."""
    lines = stdin.split(b"\n")
    if any(len(line) >= MAX_LINE_BYTES for line in lines):
        raise HelperError("bufio.Scanner: token too long")
    return b"".join(line[:-1] if line.endswith(b"\r") else line for line in lines)


def _joined_lines(stdin: bytes) -> str:
    """The store message as text; invalid UTF-8 becomes U+FFFD, as Go's decoder does."""
    return _scanned(stdin).decode("utf-8", errors="credbridge-go-replace")


def _server_url(stdin: bytes) -> str:
    try:
        server_url = _scanned(stdin).decode("utf-8").strip(_GO_SPACE)
    except UnicodeDecodeError:
        raise HelperError("the server URL is not valid UTF-8") from None
    if not server_url:
        raise MissingServerURL()
    if "\0" in server_url:
        raise HelperError("the server URL contains a NUL byte")
    return server_url


def _one_line(message: str) -> bytes:
    if "@" in message:  # a URL's userinfo may hold a password: never in an answer (`re` only then)
        from credbridge.urls import redacted

        message = redacted(message)
    return (" ".join(message.splitlines()) + "\n").encode("utf-8", errors="replace")
