"""Self-check for the test-support daemons: ``python -m tests.support.selfcheck``.

Why: when a credbridge test fails, this tells in seconds whether the
environment (gnome-keyring, dbus, docker-registry, skopeo) is to blame.
Exits non-zero on any failure and keeps the scratch directory for its logs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .keyring_session import (
    SECRETSERVICE_HELPER,
    delete_all_docker_items,
    helper_round_trip,
    is_default_collection_locked,
    lock_default_collection,
    start_private_keyring,
    unlock_default_collection,
)
from .registry import start_registry


def _run(argv: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=60)


def check(ok: object, what: object) -> None:
    """Like assert, but survives python -O."""
    if not ok:
        raise RuntimeError(f"selfcheck failed: {what}")


def _leftovers(root: Path, pids: list[int]) -> list[str]:
    """Live (non-zombie) processes among ``pids`` or with root in cmdline/environ."""
    found = []
    needle = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and (int(entry.name) in pids or needle in blob):
            argv0 = blob.split(b"\0")[0].decode(errors="replace")
            found.append(f"{entry.name}: {argv0}")
    return found


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="cb-selfcheck-"))
    keyring = registry = None
    t0 = time.monotonic()
    try:
        keyring = start_private_keyring(root / "home")
        print(
            f"keyring up in {time.monotonic() - t0:.2f}s: dbus pid {keyring.dbus_pid}, "
            f"gnome-keyring pid {keyring.keyring_pid}, env keys {sorted(keyring.env)}"
        )
        env = keyring.env

        cred = {"ServerURL": "selfcheck.invalid", "Username": "bob", "Secret": "s3cret"}
        check(_run([SECRETSERVICE_HELPER, "store"], env, json.dumps(cred)).returncode == 0, "store")
        got = _run([SECRETSERVICE_HELPER, "get"], env, cred["ServerURL"])
        check(json.loads(got.stdout) == cred, got)
        listed = json.loads(_run([SECRETSERVICE_HELPER, "list"], env).stdout)
        check(listed == {"selfcheck.invalid": "bob"}, listed)
        check(_run([SECRETSERVICE_HELPER, "erase"], env, cred["ServerURL"]).returncode == 0, "erase")
        check(_run([SECRETSERVICE_HELPER, "get"], env, cred["ServerURL"]).returncode != 0, "get after erase")
        print("secretservice store/get/list/erase: ok")

        _run([SECRETSERVICE_HELPER, "store"], env, json.dumps(cred))
        delete_all_docker_items(env)
        check(json.loads(_run([SECRETSERVICE_HELPER, "list"], env).stdout) == {}, "list after delete")
        print("delete_all_docker_items: ok")

        lock_default_collection(env)
        check(is_default_collection_locked(env), "collection locked")
        unlock_default_collection(env)
        helper_round_trip(env)
        print("lock/unlock default collection: ok")

        registry = start_registry(root / "registry")
        print(f"registry up on {registry.host} (pid {registry.pid}), user {registry.username}")
        ref = registry.push_test_image(env)
        creds = f"{registry.username}:{registry.password}"
        res = _run(["skopeo", "inspect", "--tls-verify=false", "--creds", creds, f"docker://{ref}"], env)
        check(res.returncode == 0, res.stderr)
        info = json.loads(res.stdout)
        check(len(info["Layers"]) == 1 and info["Os"] == "linux", info)
        print(f"pushed and inspected {ref}: {info['Digest']}")
        bad = _run(
            ["skopeo", "inspect", "--tls-verify=false", "--creds", f"{registry.username}:wrong", f"docker://{ref}"], env
        )
        check(bad.returncode != 0, "registry accepted a wrong password")
        print("wrong password rejected: ok")
    except BaseException:
        print(f"FAILED; logs kept in {root}", file=sys.stderr)
        raise
    finally:
        pids = []
        for daemon in (registry, keyring):
            if daemon is not None:
                daemon.stop()
                daemon.stop()  # idempotent
        if keyring:
            pids += [keyring.dbus_pid, keyring.keyring_pid]
        if registry:
            pids.append(registry.pid)
    left = _leftovers(root, pids)
    if left:
        print(f"LEAKED processes: {left}; logs kept in {root}")
        return 1
    print(f"stopped; no process left (checked pids {pids} and /proc for {root})")
    shutil.rmtree(root)
    print(f"selfcheck passed in {time.monotonic() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
