"""Apptainer's and SingularityCE's config directories under `credbridge exec`: private, with tokens.

Each program gets its own directory holding its endpoint tokens, and what it changed in
remote.yaml comes home when the command ends (docs/design.md, "authfile and exec").
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
from typing import Callable, Mapping, NamedTuple, Optional

from credbridge.errors import CredentialsNotFound
from credbridge.files import atomicfile, dockerconfig, remotetokens, remoteyaml
from credbridge.files.dockerconfig import Config
from credbridge.helperclient import HelperProgram
from credbridge.store import Credentials
from credbridge.stores.apptainer import (
    APPTAINER,
    DOCKER_CONFIG_NAME,
    REMOTE_YAML_NAME,
    SINGULARITY,
    Flavour,
    config_dir,
)

#: Files that hold secrets: generated in the private directory, never linked to the real ones.
CREDENTIAL_FILES = (REMOTE_YAML_NAME, DOCKER_CONFIG_NAME)
#: A path that only exec's process keeps alive, holding the given bytes (bridge's memory file).
AnonymousFile = Callable[[bytes], str]


class Program(NamedTuple):
    flavour: Flavour
    variable: str
    follows_symlinks: bool  # whether its remote.yaml may be a link to exec's memory file


PROGRAMS = (Program(APPTAINER, "APPTAINER_CONFIGDIR", True), Program(SINGULARITY, "SINGULARITY_CONFIGDIR", False))


class Mirror(NamedTuple):
    """One program's private directory, and what exec gave it, to tell what the command changed."""

    program: Program
    real_dir: str
    private_dir: str
    given: bytes  # the remote.yaml exec wrote (b"" when the user has none)
    given_keys: frozenset[str]  # the store keys of the tokens and logins put into it
    given_logins: Config  # the authfile its docker-config.json linked to, as exec wrote it


def prepare(
    directory: str, helper: HelperProgram, authfile: str, anonymous_file: AnonymousFile, environ: Mapping[str, str]
) -> list[Mirror]:
    """A private config directory per program under `directory` (exec's own, 0700)."""
    listed = helper.list(tokens_too=True)
    given_logins = dockerconfig.parse(_read(authfile) or b"", authfile)
    mirrors = []
    for program in PROGRAMS:
        real_dir = config_dir(environ, program.flavour)
        private_dir = os.path.join(directory, program.flavour.name)
        os.mkdir(private_dir, 0o700)
        _link_all_but_credentials(real_dir, private_dir)
        os.symlink(authfile, os.path.join(private_dir, DOCKER_CONFIG_NAME))
        given, keys = _remote_yaml_with_secrets(os.path.join(real_dir, REMOTE_YAML_NAME), helper, listed)
        if given:
            _place(os.path.join(private_dir, REMOTE_YAML_NAME), given, program, anonymous_file)
        mirrors.append(Mirror(program, real_dir, private_dir, given, frozenset(keys), given_logins))
    return mirrors


def variables(mirrors: list[Mirror]) -> dict[str, str]:
    return {mirror.program.variable: mirror.private_dir for mirror in mirrors}


def bring_home(mirrors: list[Mirror], helper: HelperProgram) -> None:
    """What the command changed in each private remote.yaml: secrets into the store, the rest home."""
    for mirror in mirrors:
        _move_new_entries_home(mirror)
        _bring_registry_logins_home(mirror, helper)
        private = os.path.join(mirror.private_dir, REMOTE_YAML_NAME)
        found = _read(private)
        if found is None or found == mirror.given:
            continue
        changed = remoteyaml.parse(found, private)
        held = remotetokens.held_in(changed.document)
        for secret in held:
            helper.store(secret.credentials)
            remotetokens.forget(secret)
        for key in mirror.given_keys - {secret.credentials.server_url for secret in held}:
            helper.erase(key)  # `remote logout`, `keyserver logout` or `remote remove`
        _save_home(os.path.join(mirror.real_dir, REMOTE_YAML_NAME), changed)


def _bring_registry_logins_home(mirror: Mirror, helper: HelperProgram) -> None:
    """`registry login` and `logout` rewrite docker-config.json (docker/cli's Save renames a new
    file over the link, or writes through it): a login added or changed goes into the store, one
    removed is erased. A file gone is no logout of everything: nothing changes then."""
    private = os.path.join(mirror.private_dir, DOCKER_CONFIG_NAME)
    found = _read(private)
    if found is None:
        return
    before = _registry_logins(mirror.given_logins)
    after = _registry_logins(dockerconfig.parse(found, private))
    for key, credentials in after.items():
        if before.get(key) != credentials:
            helper.store(credentials)
    for key in before.keys() - after.keys():
        helper.erase(key)


def _registry_logins(config: Config) -> dict[str, Credentials]:
    logins = {key: dockerconfig.entry_credentials(key, entry) for key, entry in dockerconfig.auths(config).items()}
    return {key: credentials for key, credentials in logins.items() if credentials is not None}


def _move_new_entries_home(mirror: Mirror) -> None:
    """What the program created beside the credential files (keys, remote-cache the user had not yet)."""
    for name in os.listdir(mirror.private_dir):
        created = os.path.join(mirror.private_dir, name)
        home = os.path.join(mirror.real_dir, name)
        if name not in CREDENTIAL_FILES and not os.path.islink(created) and not os.path.lexists(home):
            atomicfile.private_dir(mirror.real_dir)
            shutil.move(created, home)


def _read(path: str) -> Optional[bytes]:
    """A private file, through the link to exec's memory file where it is one (written in place)."""
    try:
        with open(path, "rb") as private:
            return private.read()
    except FileNotFoundError:
        return None


def _link_all_but_credentials(real_dir: str, private_dir: str) -> None:
    """Keys, remote-cache and settings stay the user's own: links, so what the program writes there lands home."""
    if not os.path.isdir(real_dir):
        return
    for name in os.listdir(real_dir):
        if name not in CREDENTIAL_FILES:
            os.symlink(os.path.join(real_dir, name), os.path.join(private_dir, name))


def _remote_yaml_with_secrets(path: str, helper: HelperProgram, listed: Mapping[str, str]) -> tuple[bytes, list[str]]:
    """The user's remote.yaml with each endpoint's token and keyserver's login the store holds; b"" if none."""
    if atomicfile.safe_lstat(path) is None:
        return b"", []
    remote = remoteyaml.load(path)
    document = copy.deepcopy(remote.document)
    keys = []
    for holder, field, key, render in _places_for_secrets(document):
        if key in listed and not holder.get(field):
            with contextlib.suppress(CredentialsNotFound):
                holder[field] = render(helper.get(key))
                keys.append(key)
    return remoteyaml.dumps(remoteyaml.RemoteFile(document, remote.style)), keys


def _places_for_secrets(document: remoteyaml.Document) -> list[tuple[dict, str, str, Callable[[Credentials], str]]]:
    """(mapping, field, store key, how the value is written) of every endpoint and keyserver login entry."""
    places: list[tuple[dict, str, str, Callable[[Credentials], str]]] = []
    remotes = document.get("Remotes")
    for remote in remotes.values() if isinstance(remotes, dict) else ():
        if isinstance(remote, dict) and isinstance(remote.get("URI"), str):
            places.append((remote, "Token", remotetokens.ENDPOINT_PREFIX + remote["URI"], lambda found: found.secret))
    entries = document.get("Credentials")
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("URI"), str):
            places.append((entry, "Auth", remotetokens.KEYSERVER_PREFIX + entry["URI"], remotetokens.authorization))
    return places


def _place(path: str, data: bytes, program: Program, anonymous_file: AnonymousFile) -> None:
    if program.follows_symlinks:
        os.symlink(anonymous_file(data), path)
    else:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(descriptor, "wb") as private:
            private.write(data)


def _save_home(path: str, changed: remoteyaml.RemoteFile) -> None:
    """The command's remote.yaml without its secrets, in the program's own style, as the user's real one."""
    atomicfile.private_dir(os.path.dirname(path))
    with atomicfile.exclusive(path):
        remoteyaml.save(path, changed)
