"""Every helper on a broken machine: read-only HOME, full disk, corrupt files.

Each is answered by one line naming the cause and the fix, exit 1, nothing
on stderr, within seconds; what could still be read is still served, and a
damaged file is never silently replaced. The disk really is read-only or
full: the helper runs in a private mount namespace (`unshare -rm`) where its
directories are a read-only bind mount or a tiny tmpfs that is filled up.
(D-Bus and the no-provider, locked and no-`default` cases: tests/commands/test_headless.py.)
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.conftest import Helper
from tests.support.matrix import (
    EVERY_HELPER_IN_PROCESS,
    assert_clean_answer,
    assert_one_line_error,
    build_helper,
    helper_id,
    roots,
    store_message,
    stored,
    walk,
    written,
)
from tests.support.process import Result, run

ANSWER_WITHIN_SECONDS = 10
#: The cryptfile's memory of the newest generation seen holds no login: a damaged record is read as none,
#: as a missing one is (it only ever raises the bar a file must meet), so rewriting it loses nothing.
GENERATION_MEMORY = ("credbridge", "generations")
#: Run "$@" with every root named before `--` made read-only (ro) or full (full), in a private mount namespace.
IN_NAMESPACE = r"""
set -e
mode=$1; shift
while [ "$1" != -- ]; do
    if [ "$mode" = ro ]; then
        mount --bind "$1" "$1"; mount -o remount,bind,ro "$1" "$1"
    else
        # room for what is there (the audit log of a long session among it) and 256 KiB more, then filled
        size=$(( $(du -sk "$1" | cut -f1) + 256 ))k
        disk=$(mktemp -d); mount -t tmpfs -o size=$size,mode=0700 tmpfs "$disk"; cp -a "$1/." "$disk/"
        real=$(mktemp -d); mount --bind "$1" "$real"; mount --bind "$disk" "$1"
        # sockets (the D-Bus session bus) keep leading to their live originals
        (cd "$real" && find . -type s) | while read -r socket; do mount --bind "$real/$socket" "$1/$socket"; done
        dd if=/dev/zero of="$1/.filler" bs=4096 2>/dev/null || true
    fi
    shift
done
shift
exec "$@"
"""


@pytest.fixture(params=EVERY_HELPER_IN_PROCESS, ids=helper_id)
def helper(request: pytest.FixtureRequest) -> Helper:
    """In process: an agent outside the namespace would write to the real disk."""
    assert shutil.which("unshare"), "unshare (util-linux) is needed for a private mount namespace"
    helper = build_helper(request, *request.param)
    stored(helper, "before.example", "before-user", "before-secret")
    return helper


def broken(helper: Helper, mode: str, action: str, stdin: bytes = b"") -> Result:
    started = time.monotonic()
    every = [root for root in roots(helper.env) if root.is_dir()]
    writable = [str(root) for root in every if not any(other in root.parents for other in every)]
    result = run(
        ["unshare", "-rm", "sh", "-c", IN_NAMESPACE, "sh", mode, *writable, "--", helper.path, action],
        stdin,
        helper.env,
    )
    assert time.monotonic() - started < ANSWER_WITHIN_SECONDS, f"{action} took longer than {ANSWER_WITHIN_SECONDS} s"
    assert b"unshare:" not in result.stderr and b"mount:" not in result.stderr, (
        f"no mount namespace here: {result.stderr!r}"
    )
    return result


@pytest.mark.parametrize(
    "mode, cause",
    [("ro", "Read-only file system"), ("full", "No space left on device")],
    ids=["read-only-home", "full-disk"],
)
def test_a_store_that_cannot_be_written_names_the_cause_and_reads_still_work(
    helper: Helper, mode: str, cause: str
) -> None:
    result = broken(helper, mode, "store", store_message("new.example", "new-user", "new-secret"))
    if result.returncode == 0:  # a store that writes elsewhere (a keyring daemon outside the namespace)
        assert (result.stdout, result.stderr) == (b"", b"")
    else:
        assert_one_line_error(result, cause)
    got = broken(helper, mode, "get", b"before.example")
    assert (got.returncode, got.stderr) == (0, b""), got
    assert json.loads(got.stdout)["Secret"] == "before-secret"
    listed = broken(helper, mode, "list")
    assert (listed.returncode, listed.stderr) == (0, b""), listed
    erased = broken(helper, mode, "erase", b"before.example")
    assert erased.stderr == b"" and (erased.returncode == 0 or cause in erased.text), erased


AUDIT_LOG = "audit.log"
DAMAGE = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"\x00\xff garbage \xfe" * 7,
    "text": lambda data: b"{\n",
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_corrupt_file_gets_clean_answers_and_is_not_silently_replaced(helper: Helper, damage: str) -> None:
    """Every file the helper wrote, damaged in turn: one clean line per call, the damage kept for the user to see."""
    before = walk(helper.env)
    stored(helper, "more.example", "more-user", "more-secret")
    files = [
        path
        for path in written(helper.env, before)
        if path.is_file()
        and not path.is_symlink()
        and path.parent.parts[-2:] != GENERATION_MEMORY
        and not path.name.startswith(AUDIT_LOG)  # a log we append to, never a store's file
    ]
    replaced_silently = {}
    for path in files:
        original = path.read_bytes()
        damaged = DAMAGE[damage](original)
        path.write_bytes(damaged)
        try:
            for action, stdin in (
                ("get", b"more.example"),
                ("list", b""),
                ("store", store_message("after.example", "u", "s")),
            ):
                started = time.monotonic()
                result = helper(action, stdin=stdin)
                assert time.monotonic() - started < ANSWER_WITHIN_SECONDS
                assert_clean_answer(result, action)
                assert result.stderr == b"" and b"unexpected" not in result.stdout, (str(path), result)
                # An empty file holds nothing (docker reads an empty config.json as `{}`): rewriting it loses nothing.
                if (
                    action == "store"
                    and result.returncode == 0
                    and damaged
                    and path.exists()
                    and path.read_bytes() != damaged
                ):
                    if b"more-secret" not in path.read_bytes() and b"more.example" not in path.read_bytes():
                        replaced_silently[str(path)] = "rewritten without the credentials it held"
        finally:
            path.write_bytes(original)
    assert replaced_silently == {}
