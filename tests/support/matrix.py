"""What the adversarial matrix (tests/matrix/test_matrix_*.py) shares: every helper, a canary, the clean-answer rules.

The matrix runs over the store contract's STORES table, so a store added
there is attacked too without a line of change here.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import SERVING, Helper, Installation
from tests.contract.test_store_contract import STORES
from tests.support.process import Result

CANARY_SERVER = "canary-registry.credbridge.test"
CANARY_USERNAME = "canary-user"
CANARY_SECRET = "CANARY-s3cret-4b1e-do-not-echo"
NOT_FOUND = b"credentials not found in native keychain\n"
#: Every helper, served by the agent and in process.
EVERY_HELPER = [(store, serving) for store in STORES for serving in SERVING]
EVERY_HELPER_IN_PROCESS = [(store, "direct") for store in STORES]


def helper_id(param: tuple[str, str]) -> str:
    return "-".join(param)


def build_helper(request: pytest.FixtureRequest, store: str, serving: str) -> Helper:
    """The installed docker-credential-<store>, in a fresh environment of the contract suite's."""
    installation: Installation = request.getfixturevalue("installation")
    return Helper(
        installation.executable(f"docker-credential-{store.partition(':')[0]}"), STORES[store](request, serving)
    )


def with_env(helper: Helper, **changes: str) -> Helper:
    return Helper(helper.path, {**helper.env, **changes})


def store_message(server: str, username: str, secret: str) -> bytes:
    return json.dumps({"ServerURL": server, "Username": username, "Secret": secret}).encode()


def stored(helper: Helper, server: str, username: str, secret: str) -> None:
    result = helper("store", stdin=store_message(server, username, secret))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result


def with_canary(helper: Helper) -> Helper:
    stored(helper, CANARY_SERVER, CANARY_USERNAME, CANARY_SECRET)
    return helper


def canary_answer() -> bytes:
    return (
        json.dumps(
            {"ServerURL": CANARY_SERVER, "Username": CANARY_USERNAME, "Secret": CANARY_SECRET}, separators=(",", ":")
        ).encode()
        + b"\n"
    )


def assert_canary_intact(helper: Helper) -> None:
    result = helper("get", stdin=CANARY_SERVER)
    assert (result.returncode, result.stdout, result.stderr) == (0, canary_answer(), b""), result


def secret_spellings(username: str, secret: str) -> list[bytes]:
    """Every form in which a secret could leak: raw, escaped, and as docker's base64 `auth` value."""
    spellings = {
        secret.encode("utf-8", "surrogatepass"),
        ascii(secret)[1:-1].encode(),
        json.dumps(secret)[1:-1].encode(),
        base64.b64encode(f"{username}:{secret}".encode("utf-8", "surrogatepass")),
    }
    return [spelling for spelling in spellings if len(spelling) >= 6]


def assert_clean_answer(result: Result, action: str) -> None:
    """The invariants every answer keeps, however bad the input (stderr is checked by the caller)."""
    assert b"Traceback" not in result.stdout and b"Traceback" not in result.stderr, result
    assert result.returncode in (0, 1), f"exit code {result.returncode}: {result.stdout[:500]!r}"
    for spelling in secret_spellings(CANARY_USERNAME, CANARY_SECRET):
        assert spelling not in result.stdout + result.stderr, "the canary's secret was echoed"
    if result.stdout == b"":
        assert (action, result.returncode) in (("store", 0), ("erase", 0)), (
            f"only a successful store or erase may answer with nothing (action {action!r}, rc {result.returncode})"
        )
    else:
        assert result.stdout.endswith(b"\n") and result.stdout.count(b"\n") == 1, (
            f"not one line: {result.stdout[:500]!r}"
        )
    if result.returncode == 1:
        assert result.stdout, "a failure must say why"


def assert_one_line_error(result: Result, *words: str) -> None:
    """A failure a person can act on: one line on stdout naming the cause, exit 1, nothing on stderr."""
    assert (result.returncode, result.stderr) == (1, b""), result
    assert result.stdout.endswith(b"\n") and result.stdout.count(b"\n") == 1, result.stdout
    assert b"Traceback" not in result.stdout and b"unexpected" not in result.stdout, result.stdout
    for word in words:
        assert word in result.text, (word, result.text)


def roots(env: dict[str, str]) -> list[Path]:
    """Every directory a helper in `env` may write under."""
    found = {
        Path(env[name]) for name in ("HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME") if env.get(name)
    }
    if env.get("CREDBRIDGE_CRYPTFILE"):
        found.add(Path(env["CREDBRIDGE_CRYPTFILE"]).parent)
    return sorted(found)


#: Files of the programs around us, not ours: gnome-keyring's keyrings, the agent's socket and lock.
FOREIGN = (
    "/gnome-keyring.log/",
    "/keyrings/",
    "/.cache/",
    "/.dbus/",
    "/dbus-",
    "/keyring/",
    "/gnupg/",
    "/pulse/",
    "/gvfs",
)


def walk(env: dict[str, str]) -> dict[Path, os.stat_result]:
    """Every path under the roots, with its lstat, except those of other programs."""
    found: dict[Path, os.stat_result] = {}
    for root in roots(env):
        for path in _walk(root):
            if not any(marker in f"{path}/" for marker in FOREIGN):
                found[path] = path.lstat()
    return found


def _walk(root: Path) -> Iterator[Path]:
    if not root.exists():
        return
    yield root
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            yield Path(directory) / name


def written(env: dict[str, str], before: dict[Path, os.stat_result]) -> list[Path]:
    """Paths created or replaced since `before` (by inode and times)."""

    def signature(info: os.stat_result) -> tuple[int, ...]:
        return (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)

    return sorted(
        path for path, info in walk(env).items() if path not in before or signature(before[path]) != signature(info)
    )
