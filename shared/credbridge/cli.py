"""The `credbridge` management command.

Today: run or stop the per-user agent; unlock, lock and re-key the
cryptfile; bridge credentials to programs that only read an authfile.
Setup, doctor, login and migration come with their issues.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from credbridge import __version__, wire
from credbridge.errors import HelperError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="credbridge", description="Docker credential helpers for every container tool.")
    parser.add_argument("--version", action="version", version=f"credbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("agent", help="serve helper calls in the foreground (helpers start it on demand)")
    commands.add_parser("stop-agent", help="stop this user's agent (it also exits by itself when idle)")
    for name, help_text in (("unlock", "unlock the cryptfile for this login session (creates it on first use)"),
                            ("passwd", "re-encrypt the cryptfile under a new passphrase")):
        command = commands.add_parser(name, help=f"{help_text}; passphrases from the terminal, else one a line on stdin")
        command.add_argument("--timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                             help="forget the key after this long (default: 12 hours)")
    commands.add_parser("lock", help="forget the cached cryptfile key at once (helpers and agent alike)")
    authfile_parser = commands.add_parser("authfile", help="write a Docker-format authfile from a credential store")
    authfile_parser.add_argument("registries", nargs="*", metavar="REGISTRY", help="only these (default: every one)")
    authfile_parser.add_argument("-o", "--output", metavar="FILE", help="write FILE (mode 0600) instead of stdout")
    exec_parser = commands.add_parser("exec", help="run COMMAND with a private authfile that is removed when it ends")
    exec_parser.add_argument("--registry", action="append", default=[], dest="registries", metavar="REGISTRY",
                             help="only this registry (repeatable; default: every one)")
    exec_parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    for bridge_parser in (authfile_parser, exec_parser):
        bridge_parser.add_argument("--store", metavar="NAME",
                                   help="read docker-credential-NAME (default: credsStore of the docker config)")
    migrate_parser = commands.add_parser("migrate", help="move plaintext logins of docker, podman/skopeo, Apptainer and "
                                                        "SingularityCE into an encrypted store")
    migrate_parser.add_argument("--to", metavar="STORE", help="docker-credential-STORE (default: credsStore of the docker config)")
    migrate_parser.add_argument("--dry-run", action="store_true", help="only say what would move")
    migrate_parser.add_argument("--backup", action="store_true", help="keep a 0600 plaintext copy of each rewritten file")
    options = parser.parse_args(argv)
    if options.command == "exec":
        options.argv = options.argv[1:] if options.argv[:1] == ["--"] else options.argv
        if not options.argv:
            exec_parser.error("name the COMMAND to run: credbridge exec -- COMMAND...")
    if options.command == "agent":
        from credbridge.agent import main as serve

        serve()
        return 0
    if options.command == "stop-agent":
        return stop_agent()
    try:
        return {**_CRYPTFILE_COMMANDS, **_BRIDGE_COMMANDS, "migrate": migrate}[options.command](options)
    except HelperError as error:
        print(f"credbridge: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("credbridge: cancelled", file=sys.stderr)
        return 1


def stop_agent() -> int:
    try:
        with open(wire.agent_lock_path(os.environ)) as lock:
            pid = int(lock.read().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid <= 0:
        print("credbridge: no agent is running")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print("credbridge: no agent is running")
    return 0


def unlock(options: argparse.Namespace) -> int:
    from credbridge import keycache
    from credbridge.stores.cryptfile import CryptFileStore

    store = CryptFileStore(os.environ)
    creating = not os.path.lexists(store.path)
    [passphrase] = _read_passphrases(["New cryptfile passphrase: " if creating else "Cryptfile passphrase: "],
                                     confirm_last=creating)
    store.unlock(passphrase, options.timeout or keycache.DEFAULT_SECONDS)
    print(f"credbridge: {'created and ' if creating else ''}unlocked {store.path}")
    return 0


def passwd(options: argparse.Namespace) -> int:
    from credbridge import keycache
    from credbridge.stores.cryptfile import CryptFileStore

    store = CryptFileStore(os.environ)
    old, new = _read_passphrases(["Current passphrase: ", "New passphrase: "], confirm_last=True)
    store.change_passphrase(old, new, options.timeout or keycache.DEFAULT_SECONDS)
    print(f"credbridge: re-encrypted {store.path} under the new passphrase")
    return 0


def lock(_options: argparse.Namespace) -> int:
    from credbridge import keycache

    keycache.forget(os.environ)
    print("credbridge: locked: the cryptfile key is forgotten")
    return 0


_CRYPTFILE_COMMANDS = {"unlock": unlock, "passwd": passwd, "lock": lock}


def authfile(options: argparse.Namespace) -> int:
    from credbridge import bridge

    bridge.write_authfile(options.registries, options.output, options.store, os.environ)
    return 0


def exec_with_authfile(options: argparse.Namespace) -> int:
    from credbridge import bridge
    from credbridge.supervise import CommandNotRun

    try:
        return bridge.run_with_authfile(options.argv, options.registries, options.store, os.environ)
    except CommandNotRun as error:  # like a shell: 127 not found, 126 not executable
        print(f"credbridge: {error}", file=sys.stderr)
        return error.status


_BRIDGE_COMMANDS = {"authfile": authfile, "exec": exec_with_authfile}


def migrate(options: argparse.Namespace) -> int:
    from credbridge.dockerconfig import creds_store
    from credbridge.migrate import migrate as move

    target = options.to or creds_store(os.environ)
    if target is None:
        raise HelperError("no store to move logins into: pass --to keyring (desktop) or --to cryptfile (headless)")
    if move(os.environ, target, options.dry_run, options.backup) == 0:
        print("credbridge: no plaintext login found: nothing to move")
    return 0


def _read_passphrases(prompts: list[str], confirm_last: bool) -> list[bytes]:
    """From the terminal, a new passphrase typed twice; from stdin one a line (a script does not mistype)."""
    if sys.stdin.isatty():
        import getpass

        answers = [getpass.getpass(prompt).encode() for prompt in prompts]
        if confirm_last and getpass.getpass("Repeat it: ").encode() != answers[-1]:
            raise HelperError("the passphrases differ: nothing was changed")
    else:
        answers = sys.stdin.buffer.read().splitlines()[:len(prompts)]
        if len(answers) < len(prompts):
            raise HelperError(f"expected {len(prompts)} passphrase line(s) on stdin, got {len(answers)}")
    if not all(answers):
        raise HelperError("an empty passphrase is not allowed")
    return answers


def _positive_seconds(text: str) -> float:
    seconds = float(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
