"""Another docker-credential-* program (secretservice, pass, ecr-login, ...) as a router's store.

Each call gets the environment that helper reads (credbridge.stores.router.helperenv) and
the deadline of its route; in the agent, `get` answers come from
credbridge.stores.router.tokencache, and a store or erase forgets them; a helper's own token
file is kept in the agent's directory (credbridge.stores.router.helperfiles). A helper that keeps
nothing (ecr-login answers `store` with "not implemented") makes `docker
login` one line saying so, and `logout` a no-op.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

from credbridge import debuglog
from credbridge.errors import HelperError
from credbridge.files import config
from credbridge.helperclient import TIMEOUT_VARIABLE, HelperProgram, NotImplementedByHelper
from credbridge.store import Credentials
from credbridge.stores.router import tokencache
from credbridge.stores.router.helperenv import FilesDirectory, helper_environment
from credbridge.stores.router.routing import Route, Routing


class ExternalHelper:
    def __init__(self, name: str, env: Mapping[str, str], routing: Callable[[], Routing]) -> None:
        """`routing`: the router's, read at each use (an edited config counts at the next call)."""
        self._name, self._env, self._routing = name, env, routing

    def get(self, server_url: str) -> Credentials:
        route = self._route(server_url)
        program = self._program(route)
        cache = tokencache.active()
        if cache is None:
            found = program.get(server_url)
        else:
            key = tokencache.key_for(self._name, server_url, program.environ)
            found = cache.get(key, lambda: program.get(server_url), route.ttl if route else None)
        return found._replace(server_url=server_url)

    def store(self, credentials: Credentials) -> None:
        self._forget(credentials.server_url)
        route = self._route(credentials.server_url)
        try:
            self._program(route).store(credentials)
        except NotImplementedByHelper:
            routed = f"the route {route.pattern}" if route else "the read list"
            raise HelperError(
                f"{credentials.server_url} gets its logins from "
                f"docker-credential-{self._name} ({routed} in "
                f"{config.config_path(self._env)}), which makes one at each pull: "
                "no login is needed, pull and push as you are"
            ) from None

    def erase(self, server_url: str) -> None:
        self._forget(server_url)
        try:
            self._program(self._route(server_url)).erase(server_url)
        except NotImplementedByHelper:
            debuglog.log("helper keeps no logins: nothing to erase", helper=self._name)

    def list(self) -> dict[str, str]:
        """With the deadline of the first route naming this helper."""
        routes = (route for route in self._routing().routes if route.store == self._name)
        return self._program(next(routes, None)).list()

    def _route(self, server_url: str) -> Optional[Route]:
        """The registry's route when it names this helper (its settings apply), else None."""
        route = self._routing().route_for(server_url)
        return route if route is not None and route.store == self._name else None

    def _program(self, route: Optional[Route]) -> HelperProgram:
        return program_for(self._name, self._env, route, own_files())

    def _forget(self, server_url: str) -> None:
        cache = tokencache.active()
        if cache is not None:
            cache.forget(self._name, server_url)


def own_files() -> Optional[FilesDirectory]:
    """Where helpers keep their own token files while a token cache is active (the agent, doctor)."""
    cache = tokencache.active()
    return cache.files_directory if cache is not None else None


def program_for(
    name: str, env: Mapping[str, str], route: Optional[Route], own_files: Optional[FilesDirectory] = None
) -> HelperProgram:
    """The helper with the variables it reads; on its route, the route's variables and deadline;
    `own_files`: where its own token file goes (helperenv.OWN_TOKEN_FILES), else its default."""
    if route is None:
        return HelperProgram(name, helper_environment(name, env, own_files=own_files))
    longer = (
        f"raise `timeout` of the route {route.pattern} in {config.config_path(env)}"
        if route.timeout
        else f"set {TIMEOUT_VARIABLE} or the route's `timeout` for longer"
    )
    return HelperProgram(name, helper_environment(name, env, route.env, own_files), route.timeout, longer)
