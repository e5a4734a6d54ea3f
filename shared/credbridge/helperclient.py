"""Calling any docker-credential-<name> program, as docker CLI does.

Speaks only the public protocol, so Go's helpers and ours serve alike; secrets cross pipes only,
and CREDBRIDGE_HELPER_CHAIN stops a chain that comes back (docs/design.md, "Calling other helpers").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from typing import Mapping, Optional

from credbridge import debuglog
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.protocol import LIST_TOKENS_VARIABLE
from credbridge.store import Credentials

#: Long enough for a keyring unlock prompt, short enough that a wedged helper is noticed.
HELPER_TIMEOUT_SECONDS = 120
#: When the call this thread serves must be answered (time.monotonic()): set by the agent a little before
#: its own limit for a call, so that a helper that hangs is named rather than the call given up.
_serving = threading.local()
#: Whether this thread is starting a helper, and a stop signal that came meanwhile (stop_by_signal).
_starting = threading.local()
TIMEOUT_VARIABLE = "CREDBRIDGE_HELPER_TIMEOUT"
_NOT_FOUND = str(CredentialsNotFound())
#: What a helper that keeps nothing (ecr-login, gcr) answers to `store` and `erase`.
_NOT_IMPLEMENTED = "not implemented"
#: The helpers of ours calling now, outermost first: each store that delegates adds itself.
CHAIN_VARIABLE = "CREDBRIDGE_HELPER_CHAIN"
#: The <name> of docker-credential-<name>: a name, never a path (also the rule for the router's store names).
HELPER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class HelperNotRunnable(HelperError):
    """Not on PATH or not executable: nothing was run, so nothing is worth backing off from."""


class NotImplementedByHelper(HelperError):
    """The helper has no such action: ecr-login and gcr mint their logins and keep none."""


def is_helper_name(name: object) -> bool:
    return isinstance(name, str) and HELPER_NAME.match(name) is not None


def find_program(program: str, environ: Mapping[str, str]) -> Optional[str]:
    """`program` in the first absolute PATH entry that holds it executable: never from an empty entry,
    `.` or a relative one, which would run whatever the current directory holds (as Go refuses since 1.19)."""
    for directory in environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory, program)
        if os.path.isabs(directory) and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def helper_chain(environ: Mapping[str, str]) -> list[str]:
    return [link for link in environ.get(CHAIN_VARIABLE, "").split(",") if link]


def answer_by(deadline: float) -> None:
    """Called by the agent in the thread serving a call: no helper it runs outlasts `deadline`."""
    _serving.deadline = deadline


def _time_left() -> float:
    return getattr(_serving, "deadline", float("inf")) - time.monotonic()


class HelperProgram:
    """One `docker-credential-<name>` on PATH, run with the caller's environment."""

    def __init__(
        self,
        name: str,
        environ: Mapping[str, str],
        timeout: Optional[float] = None,
        longer: str = f"set {TIMEOUT_VARIABLE} for longer",
    ) -> None:
        """`timeout` (seconds) overrides CREDBRIDGE_HELPER_TIMEOUT; `longer`: how to give more."""
        if not is_helper_name(name):
            raise HelperError(f"{name!r} is not a helper name: name docker-credential-NAME by its NAME only")
        self.program = f"docker-credential-{name}"
        self.environ = dict(environ)
        self._given_timeout, self._longer = timeout, longer

    @classmethod
    def unless_looping(cls, name: str, environ: Mapping[str, str], caller: str) -> Optional["HelperProgram"]:
        """The helper `caller` may delegate to; None when it is `caller` or already calling, or when `caller`
        itself is: then a chain through helpers that are not ours (which add no link) led back to it, and it
        answers from its own files only, or it would recurse forever."""
        chain = helper_chain(environ)
        if caller in chain or name == caller or name in chain:
            debuglog.log("not delegating: a loop", helper=name, chain=" -> ".join([*chain, caller]))
            return None
        return cls(name, {**environ, CHAIN_VARIABLE: ",".join([*chain, caller])})

    def list(self, tokens_too: bool = False) -> dict[str, str]:
        """ServerURL -> Username; stdin carries `unused`, exactly what docker CLI sends. Our
        helpers name Apptainer endpoint tokens only when asked (`tokens_too`); others name all."""
        listed = self._json(self._call("list", b"unused", tokens_too=tokens_too), "list")
        if not isinstance(listed, dict) or not all(isinstance(value, str) for value in listed.values()):
            raise HelperError(f"{self.program} list answered something that is not a server -> username map")
        return listed

    def get(self, server_url: str) -> Credentials:
        """The credentials stored for exactly this key; CredentialsNotFound when the helper has none,
        as Go's client.Get returns that error for callers to test."""
        answer = self._json(self._call("get", server_url.encode(), answers_not_found=True), "get")
        if not isinstance(answer, dict) or not all(isinstance(answer.get(key), str) for key in ("Username", "Secret")):
            raise HelperError(f"{self.program} get answered something that is not a credential")
        if not answer["Username"] and not answer["Secret"]:
            debuglog.log("helper answered an empty login: not found", program=self.program)
            raise CredentialsNotFound()  # Go's pass without a store answers so, exit 0: the next source may have one
        return Credentials(server_url, answer["Username"], answer["Secret"])

    def store(self, credentials: Credentials) -> None:
        self._call(
            "store",
            json.dumps(
                {"ServerURL": credentials.server_url, "Username": credentials.username, "Secret": credentials.secret}
            ).encode(),
        )

    def erase(self, server_url: str) -> None:
        """Absent is not an error, whatever the helper answers for it."""
        with contextlib.suppress(CredentialsNotFound):
            self._call("erase", server_url.encode(), answers_not_found=True)

    def _call(self, action: str, stdin: bytes, answers_not_found: bool = False, tokens_too: bool = False) -> bytes:
        """stdout of a call that succeeded; `answers_not_found`: the helper's not-found line is an answer
        (get, erase), raised as CredentialsNotFound, not a failure of the action."""
        debuglog.log("calling helper", program=self.program, action=action)
        asked = {LIST_TOKENS_VARIABLE: "1"} if tokens_too else {}
        output, exit_code = self._run(action, stdin, asked)
        debuglog.log("helper answered", program=self.program, action=action, exit=exit_code)
        if exit_code == 0:
            return output
        message = output.decode("utf-8", "replace").strip()
        if answers_not_found and message == _NOT_FOUND:
            raise CredentialsNotFound()
        if message == _NOT_IMPLEMENTED:
            raise NotImplementedByHelper(f"{self.program} {action} failed: {message}")
        first_line = message.splitlines()[0] if message else f"exit status {exit_code}"
        raise HelperError(f"{self.program} {action} failed: {first_line}")

    def _run(self, action: str, stdin: bytes, variables: Mapping[str, str]) -> tuple[bytes, int]:
        """stdout and exit status; in a process group of its own, which is ended whole when the call is
        given up (a timeout, an interrupt): what the helper started must not outlive it."""
        timeout = self._timeout()
        _starting.helper = True  # a stop signal waits until the helper can be stopped with us
        try:
            process = self._started(action, variables)
        except BaseException:
            _stop_signals_go_through()
            raise
        with process:
            try:
                _stop_signals_go_through()
                output, _ = process.communicate(stdin, timeout=timeout)
            except BaseException as error:
                end_process_group(process)
                if isinstance(error, subprocess.TimeoutExpired):
                    raise HelperError(
                        f"{self.program} {action} did not answer within {timeout:g} seconds ({self._how_longer()})"
                    ) from None
                raise
        return output, process.returncode

    def _started(self, action: str, variables: Mapping[str, str]) -> subprocess.Popen:
        try:
            program = find_program(self.program, self.environ)
            if program is None:
                raise FileNotFoundError()
            return subprocess.Popen(
                [program, action],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**self.environ, **variables},
                start_new_session=True,
            )
        except FileNotFoundError:
            raise HelperNotRunnable(
                f"{self.program} is not on PATH: install it, or name another store with --store"
            ) from None
        except PermissionError:
            raise HelperNotRunnable(f"{self.program} is not executable: run `chmod +x` on it") from None

    def _timeout(self) -> float:
        return max(0.1, min(self._chosen_timeout(), round(_time_left(), 1)))

    def _how_longer(self) -> str:
        if self._chosen_timeout() <= _time_left():
            return self._longer
        return "the agent waits no longer for a helper; CREDBRIDGE_NO_AGENT=1 runs it in process, without that limit"

    def _chosen_timeout(self) -> float:
        if self._given_timeout is not None:
            return self._given_timeout
        text = self.environ.get(TIMEOUT_VARIABLE)
        if not text:
            return HELPER_TIMEOUT_SECONDS
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0
        if not 0 < seconds < float("inf"):
            raise HelperError(f"{TIMEOUT_VARIABLE} must be a number of seconds above 0, e.g. {HELPER_TIMEOUT_SECONDS}")
        return seconds

    def _json(self, output: bytes, action: str) -> object:
        """The decoded answer; the raw bytes never reach an error message (they may hold a secret)."""
        try:
            return json.loads(output)
        except ValueError:
            raise HelperError(f"{self.program} {action} answered something that is not JSON") from None


def stop_by_signal(number: int, _frame: object) -> None:
    """A signal handler for commands (SIGTERM, SIGHUP): end through `finally`, as Ctrl-C does. While a
    helper is being started it waits: raised then, the helper would run on unseen and unstopped."""
    if getattr(_starting, "helper", False):
        _starting.signal = number
        return
    raise SystemExit(128 + number)


def _stop_signals_go_through() -> None:
    """The helper is started (or failed to start): a stop signal that came meanwhile takes effect now."""
    _starting.helper = False
    number = getattr(_starting, "signal", None)
    if number is not None:
        _starting.signal = None
        raise SystemExit(128 + number)


def end_process_group(process: subprocess.Popen) -> None:
    """Kill the helper and every process it started (they share its process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
