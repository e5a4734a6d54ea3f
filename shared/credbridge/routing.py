"""Where docker-credential-credbridge writes and reads each registry's login.

Read from the `primary`, `routes` and `read` keys of credbridge's config
file (credbridge.config). A route pattern is anchored on the canonical
registry host: `ghcr.io` is that host only, `*.corp.example` is any host
with one or more labels before `.corp.example` (never `corp.example`
itself, never `evilcorp.example`). A pattern with a port matches that port
only; without one, any port. The most specific pattern wins: an exact host
before a wildcard, a longer wildcard before a shorter one, a port before
none. Store names are the docker-credential-* suffixes (keyring,
cryptfile, apptainer, singularity, vault, or any other helper on PATH);
`environment` is the read-only environment source and `primary` in the
read list stands for the store that writes the registry (its route, else
the primary).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Optional

from credbridge import config, urls
from credbridge.errors import HelperError
from credbridge.helpercall import is_helper_name

ROUTER = "credbridge"
ENVIRONMENT = "environment"
PRIMARY = "primary"
DEFAULT_READ = (ENVIRONMENT, PRIMARY, "apptainer", "singularity")
_PATTERN = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?$|^\[[0-9a-f:.]+\](:[0-9]+)?$")


class Route(NamedTuple):
    pattern: str
    store: str


class Routing(NamedTuple):
    """The effective routing; `primary` is None when the config leaves it to the machine."""

    primary: Optional[str]
    routes: tuple[Route, ...]
    read: tuple[str, ...]

    def route_for(self, server_url: str) -> Optional[Route]:
        """The most specific route whose pattern matches the registry, if any."""
        host, port = urls.registry_host(server_url)
        matching = [route for route in self.routes if pattern_matches(route.pattern, host, port)]
        return max(matching, key=lambda route: _specificity(route.pattern), default=None)


def load_routing(env: Mapping[str, str]) -> Routing:
    """The routing of the caller's config file; every mistake in it is one line naming the key."""
    settings = config.load_config(env)
    where = config.config_path(env)
    primary = settings.get("primary")
    if primary is not None:
        primary = _writable_store_name(primary, "primary", where)
    routes = settings.get("routes") or {}
    if not isinstance(routes, dict):
        raise HelperError(f"`routes` in {where} must map registry patterns to store names")
    parsed = tuple(Route(_pattern(pattern, where), _writable_store_name(store, f"routes.{pattern}", where))
                   for pattern, store in routes.items())
    read = settings.get("read", list(DEFAULT_READ))
    if not isinstance(read, list) or not read:
        raise HelperError(f"`read` in {where} must be a non-empty list of store names, e.g. {list(DEFAULT_READ)}")
    return Routing(primary, parsed, tuple(_store_name(name, "read", where) for name in read))


def is_pattern(text: str) -> bool:
    """A route pattern: `host[:port]`, `*.domain[:port]` or `[ipv6][:port]`, lower-case."""
    return bool(_PATTERN.match(text))


def exact_registry(text: str) -> Optional[str]:
    """The canonical `host[:port]` of one registry (a URL's scheme and Docker Hub's v1 path allowed);
    None for a wildcard, a repository path, userinfo or anything else that is not one registry."""
    registry = urls.canonical(text)
    return registry if is_pattern(registry) and not registry.startswith("*.") else None


def pattern_matches(pattern: str, host: str, port: str) -> bool:
    pattern_host, pattern_port = urls.registry_host(pattern.replace("*.", "wildcard.", 1))
    if pattern_port and pattern_port != port:
        return False
    if pattern.startswith("*."):
        suffix = pattern_host[len("wildcard"):]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern_host


def _specificity(pattern: str) -> tuple[bool, int, bool]:
    host, port = urls.registry_host(pattern.replace("*.", "wildcard.", 1))
    return (not pattern.startswith("*."), len(host), bool(port))


def _pattern(pattern: Any, where: str) -> str:
    text = str(pattern).strip().lower()
    if not is_pattern(text):
        raise HelperError(f"route pattern {pattern!r} in {where} is not a registry host[:port] or *.domain[:port]")
    return text


def _writable_store_name(value: Any, key: str, where: str) -> str:
    name = _store_name(value, key, where)
    if name in (ENVIRONMENT, PRIMARY):
        raise HelperError(f"`{key}` in {where} must name a store that keeps logins, not `{name}`")
    return name


def _store_name(value: Any, key: str, where: str) -> str:
    if not is_helper_name(value):
        raise HelperError(f"`{key}` in {where} must name a store (keyring, cryptfile, apptainer, ...), not {config.shortened(value)}")
    if value == ROUTER:
        raise HelperError(f"`{key}` in {where} names the router itself (credbridge): name the store it should use, "
                          "e.g. keyring or cryptfile")
    return value
