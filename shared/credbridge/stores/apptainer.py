"""docker-credential-apptainer / -singularity: the credentials Apptainer and SingularityCE keep.

Reads and writes their authfile and remote.yaml exactly where and as they do, so that every tool
sees the same logins (docs/design.md, "apptainer"; docs/protocol.md section 4).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Optional

from credbridge import debuglog, urls
from credbridge.errors import CredentialsNotFound
from credbridge.files import atomicfile, dockerconfig, remotetokens, remoteyaml, userdirs
from credbridge.helperclient import HelperProgram
from credbridge.store import Credentials

DOCKER_CONFIG_NAME = "docker-config.json"
REMOTE_YAML_NAME = "remote.yaml"
#: Credentials entries that only mark an OCI login (the secret is in the authfile).
OCI_SCHEMES = ("docker", "oras")


class Flavour(NamedTuple):
    name: str
    directory_name: str
    config_dir_variables: tuple[str, ...]  # first set one wins
    authfile_variable: str
    falls_back_to_docker: bool  # Apptainer >= 1.4 reads ~/.docker/config.json when its own file is absent
    legacy: Optional["Flavour"]  # whose files the program adopts when its own directory does not exist yet


SINGULARITY = Flavour("singularity", ".singularity", ("SINGULARITY_CONFIGDIR",), "SINGULARITY_AUTHFILE", False, None)
APPTAINER = Flavour(
    "apptainer",
    ".apptainer",
    ("APPTAINER_CONFIGDIR", "SINGULARITY_CONFIGDIR"),
    "APPTAINER_AUTH_FILE",
    True,
    SINGULARITY,
)


def _configured_dir(env: Mapping[str, str], flavour: Flavour) -> Optional[str]:
    return next((env[name] for name in flavour.config_dir_variables if env.get(name)), None)


def config_dir(env: Mapping[str, str], flavour: Flavour) -> str:
    """Where the program keeps remote.yaml and its docker-config (syfs.ConfigDir)."""
    return _configured_dir(env, flavour) or os.path.join(userdirs.home(env), flavour.directory_name)


class ApptainerFilesStore:
    """The four operations over one flavour's authfile and remote.yaml."""

    def __init__(self, env: Mapping[str, str], flavour: Flavour) -> None:
        self._env = dict(env)
        self._flavour = flavour
        self.config_dir = config_dir(env, flavour)
        self.remote_yaml = os.path.join(self.config_dir, REMOTE_YAML_NAME)
        self.authfile = env.get(flavour.authfile_variable) or os.path.join(self.config_dir, DOCKER_CONFIG_NAME)
        self._fallback_authfile: Optional[str] = None
        if flavour.falls_back_to_docker and not env.get(flavour.authfile_variable):
            # syfs.FallbackDockerConf: the config-dir variable, if set, replaces ~/.docker too.
            docker_dir = _configured_dir(env, flavour) or os.path.join(userdirs.home(env), ".docker")
            self._fallback_authfile = os.path.join(docker_dir, "config.json")

    # -- the four operations -------------------------------------------------

    def get(self, server_url: str) -> Credentials:
        for source in (self._get_from_authfile, self._get_from_remote_yaml):
            found = source(server_url)
            if found is not None:
                return Credentials(server_url, found.username, found.secret)
        raise CredentialsNotFound()

    def store(self, credentials: Credentials) -> None:
        """What `registry login` does: the secret into the authfile, a `docker://host` stub into remote.yaml."""
        self._adopt_legacy_files()

        def change(config: dockerconfig.Config) -> None:
            helper = self._helper(config, credentials.server_url)
            entry: dict[str, str] = {}
            if helper is None:
                entry = dockerconfig.credentials_entry(credentials)
            else:
                helper.store(credentials)
            dockerconfig.set_in_map(config, "auths", credentials.server_url, entry)

        self._update_authfile(change)
        host = _host(credentials.server_url)

        def add_stub(document: remoteyaml.Document) -> None:
            entries = _credential_entries(document)
            replaced = [entry for entry in entries if _scheme_and_host(entry) == ("docker", host)]
            insecure = any(entry.get("Insecure") is True for entry in replaced)
            kept = [entry for entry in entries if entry not in replaced]
            document["Credentials"] = [*kept, {"URI": f"docker://{host}", "Insecure": insecure}]

        self._update_remote_yaml(add_stub)

    def erase(self, server_url: str) -> None:
        """Forget the server everywhere this store reads it from; absent is not an error."""
        self._adopt_legacy_files()

        def change(config: dockerconfig.Config) -> None:
            helper = self._helper(config, server_url)
            if helper is not None:
                helper.erase(server_url)
            dockerconfig.remove_from_map(config, "auths", urls.same_registry(server_url, dockerconfig.auths(config)))

        if os.path.lexists(self.authfile):
            self._update_authfile(change)
        if os.path.lexists(self.remote_yaml):
            self._update_remote_yaml(lambda document: _forget_in_remote_yaml(document, server_url))

    def list(self) -> dict[str, str]:
        listed: dict[str, str] = {}
        for remote_credentials in _remote_yaml_credentials(remoteyaml.load(self.remote_yaml).document):
            listed[remote_credentials.server_url] = remote_credentials.username
        listed.update(self._list_authfile())
        return listed

    # -- the authfile ----------------------------------------------------------

    def authfiles(self) -> list[str]:
        """Every file the program may read its logins from: its own, and docker's it falls back to."""
        return [self.authfile, *([self._fallback_authfile] if self._fallback_authfile else [])]

    def readable_authfile(self) -> str:
        """The file the program reads: its own, else (Apptainer) docker's."""
        if self._fallback_authfile and atomicfile.safe_lstat(self.authfile) is None:
            debuglog.log("authfile", file=self._fallback_authfile, why=f"{self.authfile} does not exist")
            return self._fallback_authfile
        debuglog.log("authfile", file=self.authfile)
        return self.authfile

    def _helper(self, config: dockerconfig.Config, server_url: str) -> Optional[HelperProgram]:
        name = dockerconfig.helper_for(config, server_url)
        if name is not None:
            debuglog.log("the authfile names a helper", server=server_url, helper=name)
        return None if name is None else HelperProgram.unless_looping(name, self._env, self._flavour.name)

    def _get_from_authfile(self, server_url: str) -> Optional[Credentials]:
        config = dockerconfig.load(self.readable_authfile()) or {}
        helper = self._helper(config, server_url)
        if helper is not None:
            try:
                return helper.get(server_url)
            except CredentialsNotFound:
                return None  # remote.yaml may hold it
        entries = {
            key: entry
            for key, entry in dockerconfig.auths(config).items()
            if dockerconfig.entry_credentials(key, entry) is not None
        }
        match = urls.best_match(server_url, entries)
        return None if match is None else dockerconfig.entry_credentials(match, entries[match])

    def _list_authfile(self) -> dict[str, str]:
        """docker/cli's GetAllCredentials: the file's entries, credsStore's list, each credHelpers registry."""
        config = dockerconfig.load(self.readable_authfile()) or {}
        listed: dict[str, str] = {}
        for key, entry in dockerconfig.auths(config).items():
            found = dockerconfig.entry_credentials(key, entry)
            if found is not None:
                listed[key] = found.username
        default_helper = dockerconfig.default_helper(config)
        if default_helper is not None:
            helper = HelperProgram.unless_looping(default_helper, self._env, self._flavour.name)
            if helper is not None:
                listed.update(helper.list())
        for registry in dockerconfig.registry_helpers(config):
            helper = self._helper(config, registry)
            if helper is not None:
                with contextlib.suppress(CredentialsNotFound):
                    listed[registry] = helper.get(registry).username
        return listed

    def _update_authfile(self, change: Callable[[dockerconfig.Config], None]) -> None:
        with atomicfile.exclusive(self.authfile):
            config = dockerconfig.load(self.authfile) or {}
            before = dockerconfig.dumps(config)
            change(config)
            if dockerconfig.dumps(config) != before:
                dockerconfig.save(self.authfile, config)

    # -- remote.yaml -------------------------------------------------------------

    def _get_from_remote_yaml(self, server_url: str) -> Optional[Credentials]:
        debuglog.log("remote.yaml", file=self.remote_yaml)
        found = {
            entry.server_url: entry for entry in _remote_yaml_credentials(remoteyaml.load(self.remote_yaml).document)
        }
        match = urls.best_match(server_url, found)
        return None if match is None else found[match]

    def _update_remote_yaml(self, change: Callable[[remoteyaml.Document], None]) -> None:
        with atomicfile.exclusive(self.remote_yaml):
            remote = remoteyaml.load(self.remote_yaml)
            before = remoteyaml.dumps(remote)
            change(remote.document)
            if remoteyaml.dumps(remote) != before:
                remoteyaml.save(self.remote_yaml, remote)

    # -- first use -----------------------------------------------------------------

    def _adopt_legacy_files(self) -> None:
        """Apptainer copies ~/.singularity's files on its first run; creating its directory first would stop that."""
        legacy = self._flavour.legacy
        if legacy is None or os.path.lexists(self.config_dir):
            return
        legacy_dir = config_dir(self._env, legacy)
        for name in (REMOTE_YAML_NAME, DOCKER_CONFIG_NAME):
            found = atomicfile.read(os.path.join(legacy_dir, name))
            if found is not None:
                target = os.path.join(self.config_dir, name)
                with atomicfile.exclusive(target):
                    if not os.path.lexists(target):
                        atomicfile.replace(target, found[0])


def _host(server_url: str) -> str:
    """`host[:port]` of a server URL, as `registry login` names its stub (path ignored)."""
    return urls.canonical(server_url).partition("/")[0]


def _credential_entries(document: remoteyaml.Document) -> list[Any]:
    entries = document.get("Credentials")
    return list(entries) if isinstance(entries, list) else []


def _scheme_and_host(entry: Any) -> Optional[tuple[str, str]]:
    uri = entry.get("URI") if isinstance(entry, dict) else None
    if not isinstance(uri, str) or "://" not in uri:
        return None
    scheme, _, _rest = uri.partition("://")
    return scheme.lower(), _host(uri)


def _remote_yaml_credentials(document: remoteyaml.Document) -> Iterator[Credentials]:
    """Keyserver logins and endpoint tokens, under keys no registry's name reaches (credbridge.files.remotetokens)."""
    return (held.credentials for held in remotetokens.held_in(document))


def _forget_in_remote_yaml(document: remoteyaml.Document, server_url: str) -> None:
    """A registry: drop its stubs. An endpoint token or keyserver login: clear it, the endpoint stays."""
    if remotetokens.is_remote_key(server_url):
        for held in remotetokens.held_in(document):
            if held.credentials.server_url == server_url:
                remotetokens.forget(held)
        return
    host = _host(server_url)
    if "Credentials" in document:
        entries = _credential_entries(document)
        kept = [entry for entry in entries if _scheme_and_host(entry) not in {(scheme, host) for scheme in OCI_SCHEMES}]
        if len(kept) != len(entries):
            if kept:
                document["Credentials"] = kept
            else:
                del document["Credentials"]  # omitempty: the programs never write an empty list


def apptainer_store(env: Mapping[str, str]) -> ApptainerFilesStore:
    return ApptainerFilesStore(env, APPTAINER)


def singularity_store(env: Mapping[str, str]) -> ApptainerFilesStore:
    return ApptainerFilesStore(env, SINGULARITY)
