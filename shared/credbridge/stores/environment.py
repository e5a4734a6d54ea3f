"""Logins handed over in environment variables: a read-only source of the router.

CI jobs and batch scripts pass credentials in the environment rather than
logging in. Two kinds, the more specific first:

- per registry: `CREDBRIDGE_AUTH_<HOST>_USERNAME` and `..._PASSWORD`, where
  <HOST> is the canonical registry host[:port] (Docker Hub is `docker.io`)
  upper-cased, every character other than A-Z and 0-9 becoming `_`:
  `ghcr.io` -> `CREDBRIDGE_AUTH_GHCR_IO_USERNAME`,
  `registry.example.com:5000` -> `CREDBRIDGE_AUTH_REGISTRY_EXAMPLE_COM_5000_PASSWORD`;
- for every registry, as Apptainer/SingularityCE read them and in their
  precedence: `APPTAINER_DOCKER_USERNAME`/`_PASSWORD`, then
  `SINGULARITY_DOCKER_*`, then `DOCKER_USERNAME`/`DOCKER_PASSWORD`.
  `CREDBRIDGE_ENV_REGISTRIES` (comma-separated route patterns, e.g.
  `docker.io,*.corp.example`) limits them to those registries, so a CI
  secret meant for one registry is not offered to every registry pulled from.

Nothing is stored or erased here, and `list` is empty: a name mangled into
a variable cannot be turned back into the registry's name with certainty.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

from credbridge import routing, urls
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.store import Credentials

PER_REGISTRY_PREFIX = "CREDBRIDGE_AUTH_"
SCOPE_VARIABLE = "CREDBRIDGE_ENV_REGISTRIES"
#: Apptainer's order: its own names, then SingularityCE's, then the bare docker ones.
GLOBAL_PAIRS = (("APPTAINER_DOCKER_USERNAME", "APPTAINER_DOCKER_PASSWORD"),
                ("SINGULARITY_DOCKER_USERNAME", "SINGULARITY_DOCKER_PASSWORD"),
                ("DOCKER_USERNAME", "DOCKER_PASSWORD"))


def registry_variables(server_url: str) -> tuple[str, str]:
    """The (username, password) variable names for one registry."""
    host, port = urls.registry_host(server_url)
    stem = PER_REGISTRY_PREFIX + re.sub(r"[^A-Z0-9]", "_", (host + port).upper())
    return stem + "_USERNAME", stem + "_PASSWORD"


class EnvironmentSource:
    """The caller's environment, read on every call (the agent serves many environments)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, server_url: str) -> Credentials:
        for username_name, password_name in (registry_variables(server_url), *self._global_pairs(server_url)):
            found = self._pair(username_name, password_name)
            if found is not None:
                return Credentials(server_url, *found)
        raise CredentialsNotFound()

    def store(self, credentials: Credentials) -> None:
        raise HelperError("the environment is a read-only credential source: route this registry to a store")

    def erase(self, server_url: str) -> None:
        """Nothing to erase: what the environment holds ends with the process that set it."""

    def list(self) -> dict[str, str]:
        return {}

    def _global_pairs(self, server_url: str) -> tuple[tuple[str, str], ...]:
        scope = self._env.get(SCOPE_VARIABLE)
        if scope is None:
            return GLOBAL_PAIRS
        host, port = urls.registry_host(server_url)
        patterns = [pattern.strip().lower() for pattern in scope.split(",") if pattern.strip()]
        return GLOBAL_PAIRS if any(routing.pattern_matches(pattern, host, port) for pattern in patterns) else ()

    def _pair(self, username_name: str, password_name: str) -> Optional[tuple[str, str]]:
        username, password = self._env.get(username_name), self._env.get(password_name)
        if not username and not password:
            return None
        if not username or not password:
            missing = password_name if username else username_name
            raise HelperError(f"{username_name if username else password_name} is set but {missing} is not: "
                              "set both, or neither")
        return username, password
