"""docker-credential-credbridge: one helper name for every tool, routing to the real stores.

Writes go to the registry's route, else the primary store; reads try the `read` list in order;
CREDBRIDGE_HELPER_CHAIN keeps a file that delegates back from looping (docs/design.md, "router").
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Optional

from credbridge import debuglog, urls
from credbridge.errors import CredentialsNotFound, HelperError, StoreLocked, StoreUnavailable
from credbridge.helperclient import CHAIN_VARIABLE
from credbridge.store import Credentials, CredentialStore
from credbridge.stores.router.routing import ENVIRONMENT, PRIMARY, ROUTER, Routing, load_routing


class Login(NamedTuple):
    server_url: str
    username: str
    store: str


class Survey(NamedTuple):
    """What `list` found: the logins, and each store that could not be read (store -> why)."""

    logins: list[Login]
    unreadable: dict[str, str]


class RouterStore:
    def __init__(self, env: Mapping[str, str]) -> None:
        chain = [link for link in env.get(CHAIN_VARIABLE, "").split(",") if link]
        if ROUTER in chain:
            raise HelperError(
                f"docker-credential-credbridge was called back by a store it routes to "
                f"({' -> '.join([*chain, ROUTER])}): a route or config file names credbridge "
                "where a store belongs; name keyring, cryptfile or another store there"
            )
        self._env = env
        self._store_env = {**env, CHAIN_VARIABLE: ",".join([*chain, ROUTER])}
        self._default_primary: Optional[str] = None
        self._opened: dict[str, CredentialStore] = {}
        #: The store behind the router that served the last call, for the audit log (credbridge.audit):
        #: the source that answered, else the registry's route; "" for `list` or a call never routed.
        self.answered_by = ""
        #: Every store the last get or erase asked: the log hides a registry any of them may hold unnamed.
        self.consulted: list[str] = []

    def _route(self, server_url: str) -> str:
        """The store the registry is routed to, noted as the one answering until another does."""
        self.answered_by, self.consulted = "", []
        self.answered_by = self.writer_for(server_url)
        return self.answered_by

    def store(self, credentials: Credentials) -> None:
        writer = self._route(credentials.server_url)
        debuglog.log("router store", server=credentials.server_url, store=writer)
        self._open(writer).store(credentials)

    def get(self, server_url: str) -> Credentials:
        """The first source that has it. A source that cannot be reached counts as not having it, so an
        anonymous pull goes on; a locked or damaged one is reported only if no other source has it. A mistake
        in the caller's own environment variables is theirs to fix, so it is a warning even then."""
        failures: list[tuple[str, HelperError]] = []
        environment_mistakes: list[str] = []
        for name in self.readers_for(self._route(server_url)):
            self.consulted.append(name)
            try:
                found = self._open(name).get(server_url)
            except CredentialsNotFound:
                continue
            except StoreUnavailable as error:
                debuglog.log("router source unavailable, read as not found", store=name, error=str(error))
                continue
            except HelperError as error:
                debuglog.log("router source failed", store=name, error=str(error))
                failures.append((name, error))
                if name == ENVIRONMENT:
                    environment_mistakes.append(str(error))
                continue
            debuglog.log("router get", server=server_url, store=name)
            self.answered_by = name
            for mistake in environment_mistakes:
                debuglog.warn(mistake)
            return found
        self._raise_first(failures)
        raise CredentialsNotFound()

    def erase(self, server_url: str) -> None:
        """From every place a read looks, so that no older copy answers after a logout."""
        failures: list[tuple[str, HelperError]] = []
        for name in self.readers_for(self._route(server_url)):
            if name == ENVIRONMENT:
                continue
            self.consulted.append(name)
            try:
                self._open(name).erase(server_url)
            except HelperError as error:
                failures.append((name, error))
        self._raise_first(failures)

    def _raise_first(self, failures: list[tuple[str, HelperError]]) -> None:
        """The first source's failure, that source then being the one that answered."""
        if failures:
            self.answered_by, error = failures[0]
            raise error

    def list(self) -> dict[str, str]:
        return {login.server_url: login.username for login in self.survey().logins}

    def survey(self) -> Survey:
        """Every source merged, one entry per registry (the first source's spelling and user win).

        A source that is locked or cannot be reached, or a secondary source
        that fails, is named in `unreadable` and the rest are listed, so one
        broken file does not break `docker build`; a damaged primary store is
        an error.
        """
        self.answered_by, self.consulted = "", []
        merged: dict[str, Login] = {}
        unreadable: dict[str, str] = {}
        for name in self.listed_stores():
            try:
                listed = self._open(name).list()
            except HelperError as error:
                if name == self.primary() and not isinstance(error, (StoreLocked, StoreUnavailable)):
                    raise
                debuglog.log("router list source failed", store=name, error=str(error))
                unreadable[name] = str(error)
                continue
            for server, username in sorted(listed.items()):
                merged.setdefault(urls.canonical(server), Login(server, username, name))
        return Survey(list(merged.values()), unreadable)

    # -- where each registry goes ---------------------------------------------

    def primary(self) -> str:
        """The configured primary store, else the best one this machine offers."""
        if self._routing.primary is not None:
            return self._routing.primary
        if self._default_primary is None:
            self._default_primary = default_primary(self._env)
        return self._default_primary

    @property
    def _routing(self) -> Routing:
        """Read at each use: the agent keeps a router for long, and an edited config.yaml must take
        effect at the next call (credbridge.files.config parses the file again only when it changed)."""
        return load_routing(self._env)

    def writer_for(self, server_url: str) -> str:
        route = self._routing.route_for(server_url)
        return route.store if route is not None else self.primary()

    def readers_for(self, writer: str) -> list[str]:
        """The read list of a registry written to `writer`, `primary` resolved to it; the writer is always read."""
        names = [writer if name == PRIMARY else name for name in self._routing.read]
        return _unique(names if writer in names else [*names, writer])

    def listed_stores(self) -> list[str]:
        names = [self.primary() if name == PRIMARY else name for name in self._routing.read]
        return _unique([*names, self.primary(), *(route.store for route in self._routing.routes)])

    def _open(self, name: str) -> CredentialStore:
        if name not in self._opened:
            self._opened[name] = open_source(name, self._env, self._store_env, lambda: self._routing)
        return self._opened[name]


def open_source(
    name: str, env: Mapping[str, str], store_env: Mapping[str, str], routing: Callable[[], Routing]
) -> CredentialStore:
    """A store of ours in process, the environment, or any other helper on PATH over the protocol."""
    from credbridge.stores.catalog import STORES, open_store

    if name == ENVIRONMENT:
        from credbridge.stores.environment import EnvironmentSource

        return EnvironmentSource(env)
    if name in STORES:
        return open_store(name, store_env)
    from credbridge.stores.router.external import ExternalHelper

    return ExternalHelper(name, store_env, routing)


def default_primary(env: Mapping[str, str]) -> str:
    """keyring where one always exists (macOS, Windows, a python-keyring backend chosen) or a Secret
    Service answers on the caller's session bus; else the encrypted file, which needs no desktop."""
    from credbridge.stores.keyring import backend_choice

    if backend_choice(env) != "secretservice":
        return "keyring"
    from credbridge.stores.secretservice import provider_reachable

    return "keyring" if provider_reachable(env) else "cryptfile"


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
