"""The `credbridge` management command.

Parses the command line and hands each command to the module that does the work, imported only
for that command: the agent; unlock, lock and re-key the cryptfile; authfile bridging; migration;
setup; and the router's logins, configuration and health check.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from credbridge import __version__, wire
from credbridge.commands.tool_names import TOOLS
from credbridge.errors import HelperError

#: Shown by `credbridge COMMAND --help`.
EXAMPLES = {
    "setup": "  credbridge setup                      (every tool found on PATH -> docker-credential-credbridge)\n"
    "  credbridge setup --helper keyring --tool docker --dry-run\n"
    "  credbridge setup --undo",
    "login": "  credbridge login ghcr.io -u alice     (asks for the password)\n"
    '  echo "$TOKEN" | credbridge login --password-stdin -u ci registry.example.com:5000',
    "logout": "  credbridge logout ghcr.io\n  credbridge logout                     (Docker Hub)",
    "list": "  credbridge list\n  credbridge list --json | jq -r '.[].registry'",
    "config": "  credbridge config\n  credbridge config --json",
    "doctor": "  credbridge doctor\n  credbridge doctor ghcr.io --json",
    "migrate": "  credbridge migrate --dry-run\n  credbridge migrate --to cryptfile --backup\n"
    "  credbridge migrate --from pass --erase      (leave docker-credential-pass for the router)",
    "unlock": "  credbridge unlock\n  credbridge unlock --timeout 3600 < ~/.config/credbridge/passphrase",
    "passwd": "  credbridge passwd                     (old, then new passphrase twice)",
    "lock": "  credbridge lock",
    "authfile": "  credbridge authfile -o ~/auth.json ghcr.io     (0600; remove it when done)\n"
    "  credbridge authfile --store keyring -o ~/auth.json",
    "exec": "  credbridge exec -- singularity pull docker://ghcr.io/org/image\n"
    "  credbridge exec --registry ghcr.io -- apptainer build out.sif def.def",
    "audit": "  credbridge audit --since 1h\n  credbridge audit --registry ghcr.io --tool docker\n"
    "  credbridge audit --json | jq -r '.[] | [.tool, .registry] | @tsv'",
    "agent": "  credbridge agent                      (helpers start it on demand)",
    "stop-agent": "  credbridge stop-agent",
    "check-helper": "  credbridge check-helper pass           (read-only: version, list, get of nothing)\n"
    "  credbridge check-helper credbridge --write",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="credbridge", description="Docker credential helpers for every container tool."
    )
    parser.add_argument("--version", action="version", version=f"credbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_command(commands, "agent", "serve helper calls in the foreground (helpers start it on demand)")
    _add_command(commands, "stop-agent", "stop this user's agent (it also exits by itself when idle)")
    for name, help_text in (
        ("unlock", "unlock the cryptfile for this login session (creates it on first use)"),
        ("passwd", "re-encrypt the cryptfile under a new passphrase"),
    ):
        command = _add_command(commands, name, f"{help_text}; passphrases from the terminal, else one a line on stdin")
        command.add_argument(
            "--timeout",
            type=_positive_seconds,
            default=None,
            metavar="SECONDS",
            help="forget the key after this long (default: 12 hours)",
        )
    commands.choices["unlock"].add_argument(
        "--new",
        action="store_true",
        help="create the cryptfile from a passphrase on stdin (a terminal asks twice instead)",
    )
    commands.choices["unlock"].add_argument(
        "--accept-rollback",
        action="store_true",
        help="keep a cryptfile that is older than, or not, the one last seen at its path",
    )
    _add_command(commands, "lock", "forget the cached cryptfile key at once (helpers and agent alike)")
    authfile_parser = _add_command(commands, "authfile", "write a Docker-format authfile from a credential store")
    authfile_parser.add_argument("registries", nargs="*", metavar="REGISTRY", help="only these (default: every one)")
    authfile_parser.add_argument("-o", "--output", metavar="FILE", help="write FILE (mode 0600) instead of stdout")
    exec_parser = _add_command(commands, "exec", "run COMMAND with a private authfile that is removed when it ends")
    exec_parser.add_argument(
        "--registry",
        action="append",
        default=[],
        dest="registries",
        metavar="REGISTRY",
        help="only this registry (repeatable; default: every one)",
    )
    exec_parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    for bridge_parser in (authfile_parser, exec_parser):
        bridge_parser.add_argument(
            "--store",
            metavar="NAME",
            help="read docker-credential-NAME (default: credsStore of the docker config, else credbridge)",
        )
    migrate_parser = _add_command(
        commands,
        "migrate",
        "move plaintext logins of docker, podman/skopeo, Apptainer and "
        "SingularityCE (or every login of another helper) into an "
        "encrypted store",
    )
    migrate_parser.add_argument(
        "--to",
        metavar="STORE",
        help="docker-credential-STORE (default: credsStore of the docker config, else credbridge, the router)",
    )
    migrate_parser.add_argument(
        "--from",
        dest="source",
        metavar="STORE",
        help="instead of plaintext files, move every login of docker-credential-STORE "
        "(e.g. pass), then point every tool at the target",
    )
    migrate_parser.add_argument(
        "--erase", action="store_true", help="with --from: remove the logins from STORE once the target gave each back"
    )
    migrate_parser.add_argument("--dry-run", action="store_true", help="only say what would move")
    migrate_parser.add_argument(
        "--backup", action="store_true", help="keep a 0600 plaintext copy of each rewritten file"
    )
    setup_parser = _add_command(
        commands,
        "setup",
        "point docker, podman, skopeo, buildah, Apptainer and SingularityCE at one credential helper (--undo reverts)",
    )
    setup_parser.add_argument(
        "--helper", default="credbridge", metavar="NAME", help="docker-credential-NAME (default: credbridge)"
    )
    setup_parser.add_argument(
        "--tool",
        action="append",
        default=[],
        dest="tools",
        choices=TOOLS,
        help="only this tool (repeatable; default: every one found on PATH)",
    )
    setup_parser.add_argument("--undo", action="store_true", help="give back every file setup changed")
    setup_parser.add_argument("--dry-run", action="store_true", help="only say what would change")
    _add_router_commands(commands)
    check_parser = _add_command(
        commands,
        "check-helper",
        "check that docker-credential-NAME on PATH (anyone's) answers the "
        "credential-helper protocol as Go's helpers do",
    )
    check_parser.add_argument("name", metavar="NAME", help="the NAME of docker-credential-NAME")
    check_parser.add_argument(
        "--write", action="store_true", help="also store, read back and erase throwaway logins (*.invalid)"
    )
    for name, examples in EXAMPLES.items():
        commands.choices[name].epilog = "examples:\n" + examples
        commands.choices[name].formatter_class = argparse.RawDescriptionHelpFormatter
    options, unknown = parser.parse_known_args(argv)
    if unknown:  # the command's own usage, not the top level's
        commands.choices[options.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    if options.command == "exec":
        options.argv = options.argv[1:] if options.argv[:1] == ["--"] else options.argv
        if not options.argv:
            exec_parser.error("name the COMMAND to run: credbridge exec -- COMMAND...")
    _remove_stale_exec_dirs()
    if options.command == "agent":
        from credbridge.agent import main as serve

        serve()
        return 0
    if options.command == "stop-agent":
        return stop_agent()
    try:
        return {
            **_CRYPTFILE_COMMANDS,
            **_BRIDGE_COMMANDS,
            **_ROUTER_COMMANDS,
            "migrate": migrate,
            "setup": setup,
            "check-helper": check_helper,
        }[options.command](options)
    except HelperError as error:
        from credbridge.commands.terminal import printable

        _show(f"credbridge: {printable(str(error))}", to_stderr=True)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("credbridge: cancelled", file=sys.stderr)
        return 1
    except Exception as error:  # the guard, as for the helpers: one secret-free line, never a traceback
        from credbridge.protocol import describe_unexpected

        print(describe_unexpected(error), file=sys.stderr)
        return 1


def stop_agent() -> int:
    """Ask the agent to exit over its socket, once the kernel says it is ours: no pid from a file is ever signalled."""
    from credbridge.serve import tell_agent

    directory = wire.agent_dir(os.environ)
    if wire.private_dir_is_safe(directory) and tell_agent(wire.agent_socket_path(os.environ), "stop"):
        print("credbridge: the agent stops")
    else:
        print("credbridge: no agent of yours is running")
    return 0


def unlock(options: argparse.Namespace) -> int:
    from credbridge.stores.cryptfile import keycache
    from credbridge.stores.cryptfile.store import MIN_PASSPHRASE_CHARACTERS, CryptFileStore

    store = CryptFileStore(os.environ)
    creating = not os.path.lexists(store.path)
    if options.new and not creating:
        raise HelperError(f"{store.path} already exists: run 'credbridge unlock' without --new")
    if creating and not options.new and not sys.stdin.isatty():
        raise HelperError(
            f"there is no cryptfile at {store.path}: to create it from a passphrase on stdin, "
            f"run 'credbridge unlock --new' (at least {MIN_PASSPHRASE_CHARACTERS} characters)"
        )
    [passphrase] = _read_passphrases(
        ["New cryptfile passphrase: " if creating else "Cryptfile passphrase: "], confirm_last=creating
    )
    store.unlock(passphrase, options.timeout or keycache.DEFAULT_SECONDS, creating, options.accept_rollback)
    print(f"credbridge: {'created and ' if creating else ''}unlocked {store.path}")
    return 0


def passwd(options: argparse.Namespace) -> int:
    from credbridge.stores.cryptfile import keycache
    from credbridge.stores.cryptfile.store import CryptFileStore

    store = CryptFileStore(os.environ)
    old, new = _read_passphrases(["Current passphrase: ", "New passphrase: "], confirm_last=True)
    store.change_passphrase(old, new, options.timeout or keycache.DEFAULT_SECONDS)
    print(f"credbridge: re-encrypted {store.path} under the new passphrase")
    return 0


def lock(_options: argparse.Namespace) -> int:
    from credbridge.serve import tell_agent
    from credbridge.stores.cryptfile import keycache

    for place in keycache.forget_everywhere(os.environ):
        tell_agent(wire.socket_in(place), "lock")
    print("credbridge: locked: the cryptfile key is forgotten in every session, and the agents dropped what they held")
    return 0


_CRYPTFILE_COMMANDS = {"unlock": unlock, "passwd": passwd, "lock": lock}


def authfile(options: argparse.Namespace) -> int:
    from credbridge.commands.authfile import write_authfile

    write_authfile(options.registries, options.output, options.store, os.environ)
    return 0


def exec_with_authfile(options: argparse.Namespace) -> int:
    from credbridge.commands.authfile import run_with_authfile
    from credbridge.commands.supervise import CommandNotRun

    try:
        return run_with_authfile(options.argv, options.registries, options.store, os.environ)
    except CommandNotRun as error:  # like a shell: 127 not found, 126 not executable
        print(f"credbridge: {error}", file=sys.stderr)
        return error.status


_BRIDGE_COMMANDS = {"authfile": authfile, "exec": exec_with_authfile}


def migrate(options: argparse.Namespace) -> int:
    from credbridge.commands import migrate as moving
    from credbridge.files.dockerconfig import creds_store

    if options.source:
        target = options.to or moving.DEFAULT_TARGET  # docker's credsStore likely names the store being left
        if moving.migrate_from_helper(os.environ, options.source, target, options.dry_run, options.erase) == 0:
            print(f"credbridge: docker-credential-{options.source} holds no login: nothing to move")
        return 0
    if options.erase:
        raise HelperError("--erase needs --from STORE: plaintext files are rewritten, not erased")
    target = options.to or creds_store(os.environ) or moving.DEFAULT_TARGET
    if moving.migrate(os.environ, target, options.dry_run, options.backup) == 0:
        print("credbridge: no plaintext login found: nothing to move")
    return 0


def setup(options: argparse.Namespace) -> int:
    from credbridge.commands import tool_setup

    if options.undo:
        tool_setup.undo(os.environ, options.dry_run)
    else:
        tool_setup.setup(os.environ, options.helper, options.tools, options.dry_run)
    return 0


def check_helper(options: argparse.Namespace) -> int:
    from credbridge.commands.check_helper import check_helper as run_checks

    return run_checks(options.name, options.write, os.environ, _show)


def _add_command(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help_text: str
) -> argparse.ArgumentParser:
    """`credbridge NAME --help` opens with the line the top-level help gives NAME."""
    return commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")


def _add_router_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return _add_command(commands, name, help_text)

    login_parser = command("login", "log in to a registry through docker-credential-credbridge")
    login_parser.add_argument("registry", nargs="?", metavar="REGISTRY", help="host[:port] (default: Docker Hub)")
    login_parser.add_argument("-u", "--username", help="the account (asked for on a terminal when left out)")
    login_parser.add_argument("--password-stdin", action="store_true", help="read the password or token from stdin")
    login_parser.add_argument(
        "--no-verify", action="store_true", help="store without asking the registry whether it accepts the login"
    )
    logout_parser = command("logout", "remove a registry's login from every store the router reads")
    logout_parser.add_argument("registry", nargs="?", metavar="REGISTRY", help="host[:port] (default: Docker Hub)")
    list_parser = command("list", "show every login the router finds: registry, user and the store holding it")
    config_parser = command("config", "show the router's effective configuration and where each part comes from")
    doctor_parser = command("doctor", "check that every tool finds the same logins, safely stored")
    doctor_parser.add_argument(
        "registry",
        nargs="?",
        metavar="REGISTRY",
        help="explain which helper each tool calls for this registry, and where its login is (default: docker.io)",
    )
    doctor_parser.add_argument("--registry", dest="registry_option", metavar="REGISTRY", help="the same as REGISTRY")
    doctor_parser.add_argument(
        "--write-test",
        action="store_true",
        help="prove the keyring works: store, read back and erase a throwaway login",
    )
    audit_parser = command("audit", "show which program took which credential, and when")
    audit_parser.add_argument(
        "--since", type=_time_span, metavar="SPAN", help="only the last SPAN: 90s, 30m, 1h, 2d, 1w"
    )
    audit_parser.add_argument("--registry", metavar="REGISTRY", help="only this registry (any spelling)")
    audit_parser.add_argument("--tool", metavar="NAME", help="only calls from this program (docker, podman, ...)")
    for parser in (list_parser, config_parser, doctor_parser, audit_parser):
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def login(options: argparse.Namespace) -> int:
    from credbridge.commands import logins

    username = options.username
    if options.password_stdin:
        if not username:
            raise HelperError("--password-stdin needs --username: stdin carries only the password")
        secret = sys.stdin.read().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise HelperError("no terminal to ask for the password: use --password-stdin")
        import getpass

        username = username or input("Username: ").strip()
        secret = getpass.getpass("Password: ")
    if not username or not secret:
        raise HelperError("a login needs a username and a password or token")
    logins.login(os.environ, options.registry, username, secret, not options.no_verify, _show)
    return 0


def logout(options: argparse.Namespace) -> int:
    from credbridge.commands import logins

    logins.logout(os.environ, options.registry, _show)
    return 0


def _remove_stale_exec_dirs() -> None:
    """Any command: a killed exec's plaintext remote.yaml need not wait for the next exec."""
    from credbridge import wire
    from credbridge.files import execdirs

    execdirs.remove_stale(wire.agent_dir(os.environ, create=False))


def list_logins(options: argparse.Namespace) -> int:
    from credbridge.commands import logins

    _show(logins.render_logins(logins.list_logins(os.environ, "credbridge list"), options.json))
    return 0


def show_config(options: argparse.Namespace) -> int:
    from credbridge.commands import doctor

    _show(doctor.render_config(doctor.effective_config(os.environ), options.json))
    return 0


def check_health(options: argparse.Namespace) -> int:
    from credbridge.commands import doctor

    report = doctor.examine(os.environ, options.registry or options.registry_option or "docker.io", options.write_test)
    _show(doctor.render_report(report, options.json, doctor.use_colour(sys.stdout, os.environ)))
    return 0 if report.healthy else 1


def show_audit(options: argparse.Namespace) -> int:
    import time

    from credbridge.commands import audit_view as auditview

    since = None if options.since is None else time.time() - options.since
    filters = auditview.Filters(since, options.registry, options.tool)
    _show(auditview.show(os.environ, filters, options.json))
    return 0


def _show(text: str, to_stderr: bool = False) -> None:
    """Output a person or a script reads: every URL in it without its password (credbridge.urls.redacted)."""
    from credbridge.urls import redacted

    print(redacted(text), file=sys.stderr if to_stderr else sys.stdout)


_ROUTER_COMMANDS = {
    "login": login,
    "logout": logout,
    "list": list_logins,
    "config": show_config,
    "doctor": check_health,
    "audit": show_audit,
}


def _read_passphrases(prompts: list[str], confirm_last: bool) -> list[bytes]:
    """From the terminal, a new passphrase typed twice; from stdin one a line (a script does not mistype)."""
    if sys.stdin.isatty():
        import getpass

        answers = [getpass.getpass(prompt).encode() for prompt in prompts]
        if confirm_last and getpass.getpass("Repeat it: ").encode() != answers[-1]:
            raise HelperError("the passphrases differ: nothing was changed")
    else:
        answers = sys.stdin.buffer.read().splitlines()[: len(prompts)]
        if len(answers) < len(prompts):
            raise HelperError(f"expected {len(prompts)} passphrase line(s) on stdin, got {len(answers)}")
    if not all(answers):
        raise HelperError("an empty passphrase is not allowed")
    return answers


def _time_span(text: str) -> float:
    from credbridge.commands.audit_view import since_seconds

    try:
        return since_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_seconds(text: str) -> float:
    """A number of seconds: argparse would name this function for a ValueError, so every refusal says why."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0 (for example 3600)")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
