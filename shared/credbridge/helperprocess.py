"""Calling another docker-credential-<name> helper, exactly as docker does.

Config files delegate (`credsStore`, `credHelpers`), so a store that reads
them must call the named helper over the protocol: the secret travels on
pipes only, never in argv or the environment. A config that names us, or a
chain of helpers that comes back to one already calling, would recurse
forever: the chain of callers travels in CREDBRIDGE_HELPER_CHAIN and a
helper already in it is not called again (its credentials are not there).
"""

from __future__ import annotations

import json
import subprocess
from typing import Mapping, Optional

from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.store import Credentials

CHAIN_VARIABLE = "CREDBRIDGE_HELPER_CHAIN"
CALL_TIMEOUT_SECONDS = 60.0
#: What the Go helpers print for a missing credential: clients compare this text.
NOT_FOUND_TEXT = "credentials not found in native keychain"


class HelperCaller:
    """One helper by name, called with the caller's environment and the chain that led here."""

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.name = name
        self._env = dict(env)

    @classmethod
    def unless_looping(cls, name: str, env: Mapping[str, str], caller: str) -> Optional["HelperCaller"]:
        """The helper `caller` may delegate to; None when it is `caller` or already calling (a loop)."""
        chain = [link for link in env.get(CHAIN_VARIABLE, "").split(",") if link]
        if name == caller or name in chain:
            return None
        return cls(name, {**env, CHAIN_VARIABLE: ",".join([*chain, caller])})

    def get(self, server_url: str) -> Credentials:
        answer = json.loads(self._call("get", server_url))
        return Credentials(answer.get("ServerURL") or server_url, answer.get("Username", ""), answer.get("Secret", ""))

    def store(self, credentials: Credentials) -> None:
        self._call("store", json.dumps({"ServerURL": credentials.server_url, "Username": credentials.username,
                                        "Secret": credentials.secret}))

    def erase(self, server_url: str) -> None:
        try:
            self._call("erase", server_url)
        except CredentialsNotFound:
            pass

    def list(self) -> dict[str, str]:
        listed = json.loads(self._call("list", ""))
        return {str(key): str(value) for key, value in listed.items()} if isinstance(listed, dict) else {}

    def _call(self, action: str, stdin: str) -> str:
        program = f"docker-credential-{self.name}"
        try:
            done = subprocess.run([program, action], input=stdin.encode(), env=self._env, capture_output=True,
                                  timeout=CALL_TIMEOUT_SECONDS, check=False)
        except FileNotFoundError:
            raise HelperError(f"{program} not found on PATH: install it, or remove \"{self.name}\" from the config file") from None
        except subprocess.TimeoutExpired:
            raise HelperError(f"{program} {action} did not answer within {CALL_TIMEOUT_SECONDS:.0f} s") from None
        output = done.stdout.decode("utf-8", "replace")
        if done.returncode == 0:
            return output
        message = _first_line(output) or _first_line(done.stderr.decode("utf-8", "replace"))
        if message == NOT_FOUND_TEXT:
            raise CredentialsNotFound()
        raise HelperError(f"{program} {action} failed: {message or f'exit status {done.returncode}'}")


def _first_line(text: str) -> Optional[str]:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else None
