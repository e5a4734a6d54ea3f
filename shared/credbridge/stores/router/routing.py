"""Where docker-credential-credbridge writes and reads each registry's login.

Reads the `primary`, `routes` and `read` keys of credbridge's config file; route patterns are
anchored, the most specific wins (docs/design.md, "router").
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Optional

from credbridge import urls, wire
from credbridge.errors import HelperError
from credbridge.files import config
from credbridge.helperclient import is_helper_name

ROUTER = "credbridge"
ENVIRONMENT = "environment"
PRIMARY = "primary"
DEFAULT_READ = (ENVIRONMENT, PRIMARY, "apptainer", "singularity")
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\]"
_PORT = r"(?::[0-9]{1,5})?"
_PATTERN = re.compile(rf"^(?:(?:\*\.)?(?:(?:{_LABEL}|\*)\.)*{_LABEL}\.{_LABEL}|{_HOST}){_PORT}$")
_REAL_HOST = re.compile(rf"^(?:{_HOST})$")
_REAL_PORT = re.compile(rf"^{_PORT}$")
_WILDCARD = (
    "wildcard."  # stands for `*.` while a pattern is canonicalised: `*.index.docker.io` never becomes `docker.io`
)
PATTERN_RULE = (
    "a registry host[:port] or *.domain[:port] under a domain of two labels or more "
    "(*.corp.example, not *.io; a later * is one label: *.dkr.ecr.*.amazonaws.com)"
)


class Route(NamedTuple):
    pattern: str
    store: str
    ttl: Optional[float] = None
    timeout: Optional[float] = None
    env: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The settings given, as `credbridge config` shows them."""
        given = {"ttl": self.ttl, "timeout": self.timeout, "env": list(self.env)}
        return {key: value for key, value in given.items() if value}


class Routing(NamedTuple):
    """The effective routing; `primary` is None when the config leaves it to the machine."""

    primary: Optional[str]
    routes: tuple[Route, ...]
    read: tuple[str, ...]

    def route_for(self, server_url: str) -> Optional[Route]:
        """The most specific route whose pattern matches the registry, if any."""
        registry = real_registry(server_url)
        if registry is None:
            return None
        matching = [route for route in self.routes if pattern_matches(route.pattern, *registry)]
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
    parsed = tuple(_route(_pattern(pattern, where), value, where) for pattern, value in routes.items())
    read = settings.get("read", list(DEFAULT_READ))
    if not isinstance(read, list) or not read:
        raise HelperError(f"`read` in {where} must be a non-empty list of store names, e.g. {list(DEFAULT_READ)}")
    return Routing(primary, parsed, tuple(_store_name(name, "read", where) for name in read))


def is_pattern(text: str) -> bool:
    """A route pattern: `host[:port]`, `*.domain[:port]` (two labels or more) or `[ipv6][:port]`, lower-case."""
    return bool(_PATTERN.match(text))


def real_registry(server_url: str) -> Optional[tuple[str, str]]:
    """('host', ':port') of the registry asked for when its host is a host name (IDNA applied) or an IP literal
    and its port digits; None for anything else (`evil.com#.corp.example`, userinfo), which no pattern matches."""
    host, port = urls.registry_host(server_url)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return (host, port) if _REAL_HOST.match(host) and _REAL_PORT.match(port) else None


def exact_registry(text: str) -> Optional[str]:
    """The canonical `host[:port]` of one registry (a URL's scheme and Docker Hub's v1 path allowed);
    None for a wildcard, a repository path, userinfo or anything else that is not one registry."""
    registry = urls.canonical(text)
    return registry if is_pattern(registry) and "*" not in registry else None


def pattern_matches(pattern: str, host: str, port: str) -> bool:
    """A route's match: a pattern without a port matches any port (a route chooses a store, it releases nothing)."""
    pattern_port = pattern_parts(pattern)[2]
    return (not pattern_port or pattern_port == port) and _host_matches(pattern, host)


def scope_matches(pattern: str, server_url: str) -> bool:
    """Whether a pattern releases a secret to the registry asked for: a real host, the port exactly as the
    pattern spells it (none: the registry's default port, as canonical matching spells it, never any port)."""
    registry = real_registry(server_url)
    return registry is not None and pattern_parts(pattern)[2] == registry[1] and _host_matches(pattern, registry[0])


def pattern_parts(pattern: str) -> tuple[bool, str, str]:
    """(is a wildcard, canonical host or the wildcard's domain, ':port' or '')."""
    wildcard = pattern.startswith("*.")
    host, port = urls.registry_host(_WILDCARD + pattern[2:] if wildcard else pattern)
    return wildcard, host[len(_WILDCARD) :] if wildcard else host, port


def _host_matches(pattern: str, host: str) -> bool:
    """Anchored at both ends: a leading `*.` is one or more labels, a later `*` exactly one."""
    wildcard, pattern_host, _ = pattern_parts(pattern)
    if "*" not in pattern_host:
        return host.endswith("." + pattern_host) if wildcard else host == pattern_host
    labels = (_LABEL if label == "*" else re.escape(label) for label in pattern_host.split("."))
    regex = (rf"(?:{_LABEL}\.)+" if wildcard else "") + r"\.".join(labels)
    return re.fullmatch(regex, host) is not None


def _specificity(pattern: str) -> tuple[bool, int, bool]:
    wildcard, host, port = pattern_parts(pattern)
    return (not wildcard and "*" not in host, len(host), bool(port))


def _pattern(pattern: Any, where: str) -> str:
    text = str(pattern).strip().lower()
    if not is_pattern(text):
        raise HelperError(f"route pattern {pattern!r} in {where} is not {PATTERN_RULE}: correct it")
    return text


def _route(pattern: str, value: Any, where: str) -> Route:
    """`pattern: store`, or `pattern: {store: NAME, ttl: S, timeout: S, env: [VARIABLE, ...]}`."""
    key = f"routes.{pattern}"
    if not isinstance(value, dict):
        return Route(pattern, _writable_store_name(value, key, where))
    unknown = sorted(str(name) for name in value if name not in ("store", "ttl", "timeout", "env"))
    if unknown:
        raise HelperError(
            f"`{key}` in {where} has {', '.join(unknown)}, which credbridge does not "
            "know: a route takes store, ttl, timeout and env"
        )
    names = value.get("env") or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise HelperError(f"`{key}.env` in {where} must be a list of variable names, not {config.shortened(names)}")
    lost = [name for name in names if not wire.relevant_env({name: ""})]
    if lost:
        prefixes = ", ".join(wire.HELPER_ENV_PREFIXES)
        raise HelperError(
            f"`{key}.env` in {where} names {config.shortened(lost[0])}, which "
            "helpers do not pass on to credbridge: name variables beginning "
            f"{prefixes} or CREDBRIDGE_, or a proxy variable"
        )
    return Route(
        pattern,
        _writable_store_name(value.get("store"), f"{key}.store", where),
        _seconds(value.get("ttl"), f"{key}.ttl", where),
        _seconds(value.get("timeout"), f"{key}.timeout", where),
        tuple(names),
    )


def _seconds(value: Any, key: str, where: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise HelperError(f"`{key}` in {where} must be a number of seconds above 0, not {config.shortened(value)}")
    return float(value)


def _writable_store_name(value: Any, key: str, where: str) -> str:
    name = _store_name(value, key, where)
    if name in (ENVIRONMENT, PRIMARY):
        raise HelperError(f"`{key}` in {where} must name a store that keeps logins, not `{name}`")
    return name


def _store_name(value: Any, key: str, where: str) -> str:
    if not is_helper_name(value):
        raise HelperError(
            f"`{key}` in {where} must name a store (keyring, cryptfile, apptainer, ...), not {config.shortened(value)}"
        )
    if value == ROUTER:
        raise HelperError(
            f"`{key}` in {where} names the router itself (credbridge): name the store it should use, "
            "e.g. keyring or cryptfile"
        )
    return value
