"""`credbridge setup [--undo]`: point every container tool at one credential helper, and back.

Each tool reads its helper from one key of one file: setup changes only that key, journals the
original once and writes nothing on a second run (docs/design.md, "setup").
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from contextlib import nullcontext
from typing import Any, Callable, Mapping, NamedTuple, Optional, Protocol, Sequence

from credbridge.commands.setup_journal import Entry, Journal, digest, missing_directories
from credbridge.commands.tool_names import TOOLS
from credbridge.errors import HelperError
from credbridge.files import atomicfile, dockerconfig, registriesconf, tomlkey, userdirs
from credbridge.files.tomlkey import ABSENT
from credbridge.helperclient import find_program
from credbridge.stores.apptainer import APPTAINER, SINGULARITY, ApptainerFilesStore, Flavour
from credbridge.stores.router.routing import ROUTER

#: The first versions whose docker:// pulls and registry login honour credsStore.
CREDS_STORE_SINCE = {APPTAINER.name: (1, 4), SINGULARITY.name: (4, 1)}
VERSION_TIMEOUT_SECONDS = 30
Say = Callable[[str], None]


class KeySetting(Protocol):
    """The one key of one file that tells a tool which helper to call."""

    format_name: str  # how the journal names the file's format, to reopen it for undo
    key: str
    path: str

    def value(self, content: Optional[bytes]) -> Any:
        """The key's value in `content` (None: the file does not exist); ABSENT when unset."""

    def render(self, content: Optional[bytes], value: Any) -> bytes:
        """The file's new content with the key set to `value` (ABSENT: removed)."""

    def holds_logins(self, content: Optional[bytes]) -> bool:
        """Whether `content` holds plaintext logins: such a file is never copied into the journal."""


class DockerConfigKey:
    """`credsStore` of a docker-format config file (docker, docker-py, Apptainer, SingularityCE)."""

    format_name = "docker-config"
    key = "credsStore"

    def __init__(self, path: str) -> None:
        self.path = path

    def value(self, content: Optional[bytes]) -> Any:
        """As the tools read it: the key in any case (Go's encoding/json)."""
        value = dockerconfig.field(self._document(content), self.key)
        return ABSENT if value is None else value

    def render(self, content: Optional[bytes], value: Any) -> bytes:
        """As docker writes the file: every other key kept, in its order."""
        document = self._document(content)
        if value is ABSENT:
            dockerconfig.remove_field(document, self.key)
        else:
            dockerconfig.set_field(document, self.key, value)  # in place when present: docker keeps the order of keys
        return dockerconfig.dumps(document)

    def holds_logins(self, content: Optional[bytes]) -> bool:
        return any(
            dockerconfig.entry_credentials(key, entry) is not None
            for key, entry in dockerconfig.auths(self._document(content)).items()
        )

    def _document(self, content: Optional[bytes]) -> dockerconfig.Config:
        """`content` was just read from the file, so the file is what dockerconfig parses."""
        return {} if content is None else dict(dockerconfig.load(self.path) or {})


class RegistriesConfKey:
    """`credential-helpers` of a registries.conf file, edited line by line (credbridge.files.tomlkey)."""

    format_name = "registries-conf"
    key = registriesconf.KEY

    def __init__(self, target: registriesconf.Target) -> None:
        self.path = target.path
        self._target = target

    def value(self, content: Optional[bytes]) -> Any:
        return tomlkey.value_of(self._text(content), self.key, self.path)

    def render(self, content: Optional[bytes], value: Any) -> bytes:
        text = self._text(content)
        if self._target.is_main:
            registriesconf.check_format(text, self.path)
        return tomlkey.with_value(text, self.key, value, self.path).encode("utf-8")

    def holds_logins(self, content: Optional[bytes]) -> bool:
        return False  # registries.conf names helpers and registries, never secrets

    def _text(self, content: Optional[bytes]) -> str:
        data = self._target.start_from if content is None else content
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise HelperError(f"{self.path} is not UTF-8 text, so not TOML: fix it, then run again") from None


#: How undo reopens a journalled file, by its format.
FORMATS: dict[str, Callable[[str], KeySetting]] = {
    DockerConfigKey.format_name: DockerConfigKey,
    RegistriesConfKey.format_name: lambda path: RegistriesConfKey(registriesconf.Target(path, b"", False)),
}


class Change(NamedTuple):
    setting: KeySetting
    value: Any
    tools: list[str]


def setup(env: Mapping[str, str], helper: str, tools: Sequence[str], dry_run: bool, say: Say = print) -> None:
    """Point `tools` (default: every one found) at docker-credential-`helper`, one line per file."""
    chosen = list(dict.fromkeys(tools)) or found_tools(env)
    if not chosen:
        say("credbridge: no container tool found on PATH: name one with --tool")
        return
    _check_on_path(f"docker-credential-{helper}", env)
    changes: dict[str, Change] = {}
    for tool in chosen:
        planned = _plan(tool, env, helper, say)
        if planned is not None:
            setting, value = planned
            changes.setdefault(setting.path, Change(setting, value, [])).tools.append(tool)
    journal = _journal(env)
    for change in changes.values():
        say(f"{', '.join(change.tools)}: {_apply(change.setting, change.value, journal, dry_run)}")
    not_ready = _store_not_ready(env, helper)
    if not_ready is not None:
        say(f"credbridge: new logins go to the cryptfile, but {not_ready[0]}: run `{not_ready[1]}`")


def _check_on_path(program: str, env: Mapping[str, str]) -> None:
    """Tools find a helper only on PATH: a dry run checks that as the real run does, and names the fix."""
    if find_program(program, env) is not None:
        return
    home = env.get("HOME", "")
    for directory in dict.fromkeys(
        [os.path.dirname(os.path.abspath(sys.argv[0])), os.path.join(home, ".local", "bin")]
    ):
        if os.access(os.path.join(directory, program), os.X_OK):
            shown = "$HOME" + directory[len(home) :] if home and directory.startswith(home + os.sep) else directory
            raise HelperError(
                f"{program} is in {directory}, which is not on PATH, so no tool would find it: "
                f'run `export PATH="{shown}:$PATH"` and add that line to ~/.profile'
            )
    raise HelperError(f"{program} is not on PATH: install it, or choose another with --helper")


def _store_not_ready(env: Mapping[str, str], helper: str) -> Optional[tuple[str, str]]:
    """Why the store `helper` writes to cannot take a login yet, and the command that fixes it."""
    if helper == ROUTER:
        from credbridge.stores.router.store import RouterStore

        try:
            helper = RouterStore(env).primary()
        except HelperError:
            return None  # a config file it cannot use: `credbridge doctor` names it
    return unopened_cryptfile(env) if helper == "cryptfile" else None


def unopened_cryptfile(env: Mapping[str, str]) -> Optional[tuple[str, str]]:
    """(what keeps the cryptfile shut, the command that opens it); None when helpers can open it now."""
    from credbridge.stores.cryptfile import keycache
    from credbridge.stores.cryptfile.store import cryptfile_path

    path = cryptfile_path(env)
    if env.get("CREDBRIDGE_PASSPHRASE_FILE"):
        return None
    if not os.path.exists(path):
        return f"{path} does not exist yet", "credbridge unlock --new"
    if keycache.load(env, path) is None:
        return f"{path} is locked", "credbridge unlock"
    return None


def undo(env: Mapping[str, str], dry_run: bool, say: Say = print) -> None:
    """Give back every file setup changed: its original bytes, or only the key if it changed since."""
    journal = _journal(env)
    if not journal.exists():
        say("credbridge: setup has changed nothing here: nothing to undo")
        return
    for entry in journal.entries():
        say(_undo_file(entry, dry_run))
    if not dry_run:
        for path in journal.forget():
            _remove_created(path)


def _journal(env: Mapping[str, str]) -> Journal:
    return Journal(env, lambda path: is_tool_file(env, path))


def is_tool_file(env: Mapping[str, str], path: str) -> bool:
    """Whether setup could have written `path` for this user: all that undo may restore or remove."""
    containers = os.path.join(userdirs.home(env), ".config", "containers")
    authfiles = [
        authfile for flavour in (APPTAINER, SINGULARITY) for authfile in ApptainerFilesStore(env, flavour).authfiles()
    ]
    return path in {dockerconfig.docker_config_path(env), os.path.join(containers, "registries.conf"), *authfiles} or (
        os.path.dirname(path) == os.path.join(containers, "registries.conf.d") and path.endswith(".conf")
    )


def found_tools(env: Mapping[str, str]) -> list[str]:
    """Tools on PATH; docker also when only its config exists (docker-py has no program)."""
    return [
        tool
        for tool in TOOLS
        if find_program(tool, env) or (tool == "docker" and os.path.lexists(dockerconfig.docker_config_path(env)))
    ]


def _plan(tool: str, env: Mapping[str, str], helper: str, say: Say) -> Optional[tuple[KeySetting, Any]]:
    """The setting that points `tool` at the helper, and its value; None (after saying why) for none."""
    if tool == "docker":
        return DockerConfigKey(dockerconfig.docker_config_path(env)), helper
    if tool in ("podman", "skopeo", "buildah"):
        return RegistriesConfKey(registriesconf.target(env)), registriesconf.helpers_for(helper)
    flavour, version = _installed_flavour(tool, env)
    if version is not None and version < CREDS_STORE_SINCE[flavour.name]:
        say(f"{tool}: {_ignores_creds_store(tool, flavour, version)}, so nothing was changed")
        return None
    if helper == flavour.name:
        say(f"{tool}: docker-credential-{helper} is {tool}'s own files: nothing to point at it")
        return None
    # The file the program reads: its own, else (Apptainer >= 1.4) docker's config.json.
    return DockerConfigKey(ApptainerFilesStore(env, flavour).readable_authfile()), helper


def creds_store_ignored(env: Mapping[str, str]) -> list[str]:
    """For each Apptainer or SingularityCE on PATH too old to call a helper: that, and the way round it."""
    notes = []
    for tool in (APPTAINER.name, SINGULARITY.name):
        flavour, version = _installed_flavour(tool, env)
        if version is not None and version < CREDS_STORE_SINCE[flavour.name]:
            notes.append(_ignores_creds_store(tool, flavour, version))
    return notes


def _ignores_creds_store(tool: str, flavour: Flavour, version: tuple[int, int]) -> str:
    since = ".".join(map(str, CREDS_STORE_SINCE[flavour.name]))
    return (
        f"{flavour.name} {'.'.join(map(str, version))} ignores credsStore: run it as "
        f"`credbridge exec -- {tool} pull docker://...` (or upgrade to {since} or later)"
    )


def _installed_flavour(tool: str, env: Mapping[str, str]) -> tuple[Flavour, Optional[tuple[int, int]]]:
    """Which program `tool` really is (`singularity` may be Apptainer's link) and its version, if installed."""
    flavour = APPTAINER if tool == APPTAINER.name else SINGULARITY
    program = find_program(tool, env)
    if program is None:
        return flavour, None
    try:
        done = subprocess.run(
            [program, "--version"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        raise HelperError(f"`{program} --version` did not answer: name the tools to set up with --tool") from None
    found = re.search(r"(\d+)\.(\d+)", done.stdout)
    if found is None:
        raise HelperError(f"`{program} --version` printed no version: name the tools to set up with --tool")
    return (APPTAINER if "apptainer" in done.stdout.lower() else flavour), (int(found.group(1)), int(found.group(2)))


def _shown(value: Any) -> str:
    return "(unset)" if value is ABSENT else (f'"{value}"' if isinstance(value, str) else str(value).replace("'", '"'))


def _apply(setting: KeySetting, value: Any, journal: Journal, dry_run: bool) -> str:
    """Set the key unless it already says `value`; what happened, for the user."""
    found = atomicfile.read(setting.path)
    if setting.value(found and found[0]) == value:
        return f"already {setting.key} = {_shown(value)} in {setting.path}: unchanged"
    setting.render(found and found[0], value)  # refuses a file it cannot edit before a lock or directory is created
    if dry_run:
        return f"would set {setting.key} = {_shown(value)} in {setting.path}{'' if found else ' (a new file)'}"
    created = [path for path in missing_directories(setting.path) if not os.path.lexists(path)]
    with atomicfile.exclusive(setting.path):
        found = atomicfile.read(setting.path)
        content = found and found[0]
        before = setting.value(content)
        if before == value:
            return f"already {setting.key} = {_shown(value)} in {setting.path}: unchanged"
        written = setting.render(content, value)
        mode = stat.S_IMODE(found[1].st_mode) if found else None
        kept = None if content is None or setting.holds_logins(content) else content
        journal.record(setting.path, setting.format_name, content is not None, kept, mode, before, written, created)
        atomicfile.replace(setting.path, written)
        if mode is not None:
            os.chmod(setting.path, mode)
    what = "created with" if found is None else "set"
    return f"{what} {setting.key} = {_shown(value)} in {setting.path} (credbridge setup --undo reverts)"


def _undo_file(entry: Entry, dry_run: bool) -> str:
    """The original back if the file is as setup left it; else only the key, keeping the changes made since."""
    if atomicfile.safe_lstat(entry.path) is None:  # checked first: locking would create its directory again
        return f"{entry.path}: removed since setup, left so"
    with nullcontext() if dry_run else atomicfile.exclusive(entry.path):
        found = atomicfile.read(entry.path)
        if found is None:
            return f"{entry.path}: removed since setup, left so"
        if digest(found[0]) != entry.written_digest or (entry.existed and entry.original is None):
            setting = FORMATS[entry.file_format](entry.path)
            if not dry_run:
                atomicfile.replace(entry.path, setting.render(found[0], entry.before))
                os.chmod(entry.path, stat.S_IMODE(found[1].st_mode))
            why = (
                "changed since setup"
                if digest(found[0]) != entry.written_digest
                else "held plaintext logins, which setup does not copy"
            )
            return (
                f"{entry.path}: {why}, so only {setting.key} "
                f"{'would go' if dry_run else 'went'} back to {_shown(entry.before)}"
            )
        if not entry.existed:
            if not dry_run:
                os.unlink(entry.path)
            return f"{entry.path}: {'would be ' if dry_run else ''}removed (setup created it)"
        if not dry_run:
            atomicfile.replace(entry.path, entry.original)
            os.chmod(entry.path, 0o600 if entry.mode is None else entry.mode)
        return f"{entry.path}: {'would be ' if dry_run else ''}restored as it was before setup"


def _remove_created(path: str) -> None:
    """A directory only when empty (something else may live there now); a file (older journals list lock files)
    always."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass
