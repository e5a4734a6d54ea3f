"""`credbridge migrate`: move plaintext logins, or another helper's (`--from pass`), into a helper.

Each login is stored and read back before its file is rewritten, so a kill at any moment loses
nothing, and a second run writes nothing (docs/design.md, "migrate").
"""

from __future__ import annotations

import os
import time
from typing import Callable, Mapping, NamedTuple, Optional

from credbridge.commands import tool_setup
from credbridge.commands.terminal import printable
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.files import atomicfile, dockerconfig, remotetokens, remoteyaml, userdirs
from credbridge.helperclient import HelperProgram, find_program
from credbridge.store import Credentials
from credbridge.stores.apptainer import APPTAINER, DOCKER_CONFIG_NAME, REMOTE_YAML_NAME, SINGULARITY, config_dir
from credbridge.stores.router.routing import ROUTER

_PROGRAMS = ((APPTAINER, "Apptainer"), (SINGULARITY, "SingularityCE"))


class PlaintextFile(NamedTuple):
    path: str
    reader: str  # who reads it, for messages
    understands_creds_store: bool  # docker/cli readers do; containers/image reads only credHelpers


def plaintext_files(env: Mapping[str, str]) -> list[PlaintextFile]:
    """Every file in which docker, podman/skopeo/buildah, Apptainer or SingularityCE keep logins."""
    files = [PlaintextFile(dockerconfig.docker_config_path(env), "docker", True)]
    if env.get("XDG_RUNTIME_DIR"):
        files.append(
            PlaintextFile(
                os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"), "podman/skopeo/buildah", False
            )
        )
    files.append(
        PlaintextFile(
            os.path.join(userdirs.config_home(env), "containers", "auth.json"), "podman/skopeo/buildah", False
        )
    )
    for flavour, reader in _PROGRAMS:
        files.append(PlaintextFile(os.path.join(config_dir(env, flavour), DOCKER_CONFIG_NAME), reader, True))
    return files


def remote_yaml_files(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(path, reader) of each remote.yaml: where `remote login` and `keyserver login` leave tokens in plaintext."""
    return [(os.path.join(config_dir(env, flavour), REMOTE_YAML_NAME), reader) for flavour, reader in _PROGRAMS]


#: Helpers whose store is itself a plaintext file: moving logins there would move nothing out of plaintext.
PLAINTEXT_HELPERS = frozenset({APPTAINER.name, SINGULARITY.name})
#: Where logins go when neither --to nor docker's credsStore names a store: the router, one login for every tool.
DEFAULT_TARGET = ROUTER
Say = Callable[[str], None]


def migrate(env: Mapping[str, str], target: str, dry_run: bool, backup: bool, say: Say = print) -> int:
    """Move every plaintext login; the number moved (or, with dry_run, that would be)."""
    helper = target_helper(target, env)
    moved = 0
    for found in plaintext_files(env):
        moved += _migrate_file(found, helper, target, dry_run, backup, say)
    for path, reader in remote_yaml_files(env):
        moved += _migrate_remote_yaml(path, reader, helper, target, dry_run, backup, say)
    if moved and not dry_run:
        for note in tool_setup.creds_store_ignored(env):
            say(f"note: {note}")
    return moved


def migrate_from_helper(
    env: Mapping[str, str], source: str, target: str, dry_run: bool, erase: bool, say: Say = print
) -> int:
    """Move every login of docker-credential-`source` (Go's pass helper, say) into `target`, read each back,
    then point every tool at `target`; with `erase`, only then remove them from `source`. The number moved."""
    if source == target:
        raise HelperError(f"--from and --to both name {source}: name the store to move into with --to")
    helper = target_helper(target, env)
    origin = _installed_helper(source, env, "--from")
    listed = sorted(origin.list(tokens_too=True))  # endpoint tokens move too
    for server_url in listed:
        say(
            printable(
                f"{'would move' if dry_run else 'moving'} {server_url} (docker-credential-{source}) to "
                f"docker-credential-{target}"
            )
        )
    if not dry_run:
        for server_url in listed:
            try:
                credentials = origin.get(server_url)
            except CredentialsNotFound:
                continue  # listed, yet not found (Go secretservice >= 0.9 lists labels): nothing to move
            _store_verified(helper, credentials, f"docker-credential-{source} still holds every login")
    tool_setup.setup(env, target, [], dry_run, say)
    for found in plaintext_files(env):
        _repoint_per_registry(found.path, source, target, dry_run, say)
    if erase and not dry_run:
        for server_url in listed:
            origin.erase(server_url)
        say(f"erased {len(listed)} login(s) from docker-credential-{source}")
    return len(listed)


def target_helper(target: str, env: Mapping[str, str]) -> HelperProgram:
    """The helper to move logins into, refused before anything moves if it cannot take them."""
    if target in PLAINTEXT_HELPERS:
        raise HelperError(
            f"docker-credential-{target} keeps logins in plaintext files: migrate --to keyring, cryptfile or another "
            "encrypted store"
        )
    return _installed_helper(target, env, "--to")


def _installed_helper(name: str, env: Mapping[str, str], flag: str) -> HelperProgram:
    if find_program(f"docker-credential-{name}", env) is None:
        raise HelperError(f"docker-credential-{name} is not on PATH: install it, or name another store with {flag}")
    return HelperProgram(name, env)


def _store_verified(helper: HelperProgram, credentials: Credentials, unchanged: str) -> None:
    """Store, then read back: only a login the target gives back may leave its old place."""
    helper.store(credentials)
    try:
        read_back = helper.get(credentials.server_url)
        given_back = (read_back.username, read_back.secret) == (credentials.username, credentials.secret)
    except CredentialsNotFound:
        given_back = False
    if not given_back:
        raise HelperError(
            f"{helper.program} did not give back what was stored for {credentials.server_url}: {unchanged}"
        )


def _migrate_file(
    found: PlaintextFile, helper: HelperProgram, target: str, dry_run: bool, backup: bool, say: Say
) -> int:
    if atomicfile.safe_lstat(found.path) is None:
        return 0
    with atomicfile.exclusive(found.path):
        original = atomicfile.read(found.path)
        config = dockerconfig.load(found.path) or {}
        plaintext = {
            key: credentials
            for key, entry in dockerconfig.auths(config).items()
            if (credentials := dockerconfig.entry_credentials(key, entry)) is not None
        }
        for server_url in plaintext:
            _say_moving(say, server_url, f"{found.reader}, {found.path}", target, dry_run)
        if dry_run or not plaintext:
            return len(plaintext)
        for server_url, credentials in plaintext.items():
            _store_verified(helper, credentials, f"{found.path} left unchanged")
            dockerconfig.set_in_map(config, "auths", server_url, {})
            _point_at(config, found, server_url, target)
        _keep_backup(found.path, original, backup, say)
        dockerconfig.save(found.path, config)
    return len(plaintext)


def _migrate_remote_yaml(
    path: str, reader: str, helper: HelperProgram, target: str, dry_run: bool, backup: bool, say: Say
) -> int:
    """Endpoint tokens and keyserver logins into the helper; remote.yaml keeps the endpoints without them."""
    if atomicfile.safe_lstat(path) is None:
        return 0
    with atomicfile.exclusive(path):
        original = atomicfile.read(path)
        remote = remoteyaml.load(path)
        held = [
            found
            for found in remotetokens.held_in(remote.document)
            if not _held_elsewhere(helper, found.credentials, path, say)
        ]
        for found in held:
            _say_moving(say, found.credentials.server_url, f"{reader}, {path}", target, dry_run)
        if dry_run or not held:
            return len(held)
        for found in held:
            _store_verified(helper, found.credentials, f"{path} left unchanged")
            remotetokens.forget(found)
        _keep_backup(path, original, backup, say)
        remoteyaml.save(path, remote)
    return len(held)


def _held_elsewhere(helper: HelperProgram, credentials: Credentials, path: str, say: Say) -> bool:
    """The helper already holds another secret under this key (the other program's file had another token):
    overwriting it would lose one, so this one stays where it is, and the user decides."""
    try:
        stored = helper.get(credentials.server_url)
    except CredentialsNotFound:
        return False
    if (stored.username, stored.secret) == (credentials.username, credentials.secret):
        return False
    say(
        printable(
            f"kept {credentials.server_url} in {path}: {helper.program} holds another secret for it; "
            f"if that one no longer works, `credbridge logout {credentials.server_url}` and migrate again"
        )
    )
    return True


def _say_moving(say: Say, server_url: str, where: str, target: str, dry_run: bool) -> None:
    say(printable(f"{'would move' if dry_run else 'moving'} {server_url} ({where}) to docker-credential-{target}"))


def _keep_backup(path: str, original: Optional[tuple[bytes, os.stat_result]], backup: bool, say: Say) -> None:
    """With --backup, the file as it was, before its plaintext is removed (0600)."""
    if backup and original is not None:
        backup_path = f"{path}.credbridge-backup-{time.strftime('%Y%m%d%H%M%S')}"
        atomicfile.replace(backup_path, original[0])
        say(f"plaintext backup (mode 0600): {backup_path}")


def _repoint_per_registry(path: str, source: str, target: str, dry_run: bool, say: Say) -> None:
    """`credHelpers` entries naming the store being left name `target` instead (setup sets only credsStore)."""
    if atomicfile.safe_lstat(path) is None:
        return
    with atomicfile.exclusive(path):
        config = dockerconfig.load(path) or {}
        per_registry = config.get("credHelpers")
        named = (
            [server for server, helper in per_registry.items() if helper == source]
            if isinstance(per_registry, dict)
            else []
        )
        if not named:
            return
        say(
            f"{'would point' if dry_run else 'pointing'} {', '.join(named)} at docker-credential-{target} "
            f"(credHelpers in {path})"
        )
        if not dry_run:
            per_registry.update(dict.fromkeys(named, target))
            dockerconfig.save(path, config)


def _point_at(config: dockerconfig.Config, found: PlaintextFile, server_url: str, target: str) -> None:
    """Make the file's reader ask `target` for this registry from now on."""
    if dockerconfig.helper_for(config, server_url) == target:
        return
    if found.understands_creds_store and not dockerconfig.field(config, "credsStore"):
        dockerconfig.set_field(config, "credsStore", target)
    else:
        dockerconfig.set_in_map(config, "credHelpers", server_url, target)
