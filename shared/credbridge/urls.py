"""Which stored ServerURL answers a query: the one place that decides.

Clients spell one registry many ways: an exact key wins, else keys are compared by an anchored
canonical form, so spellings meet and a lookalike host never matches (docs/trust.md).
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from credbridge import debuglog

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
REDACTED = "<redacted>"
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: `user:password@` in a URL anywhere in a text, with or without a scheme: starting the text, a word, a quoted
#: string or a list item. The password runs to the last `@` before a blank or a quote (it may hold `@`), after a
#: scheme also past a `/` (a password may hold one: hidden, even if a parser would end the host there) unless that
#: `@` starts a digest (`repo@sha256:...`); without a scheme it stops at a `/`.
_PASSWORD_IN_USERINFO = re.compile(
    r"""(?P<start>(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)|(?<![^\s'"(\[{<,=]))(?P<user>[^\s/@:'"]*):"""
    r"""(?(scheme)[^\s'"]*@(?![a-z0-9]+:[0-9a-f]{32})|[^\s/'"]*@)"""
)
#: `scheme://token@`: userinfo without a colon after a scheme is a token as often as a name (git's `ghp_...@`).
_TOKEN_IN_USERINFO = re.compile(r"""(?P<start>[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@:'"]+@""")
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
# Docker Hub's legacy API roots name the registry itself, not a repository.
_DOCKER_HUB_ROOT_PATHS = frozenset({"", "/v1", "/v2"})


def canonical(server_url: str) -> str:
    """Scheme-less, lower-case `host[:port][/path]`; Docker Hub spellings become `docker.io`.

    Userinfo is kept, so `user@host` is never the same registry as `host`:
    when in doubt, do not match.
    """
    name = _canonical_once(server_url)
    while name != name.strip() or _SCHEME.match(name):  # laid bare by a pass: `host /`, a scheme in a scheme
        name = _canonical_once(name)
    return name


def _canonical_once(server_url: str) -> str:
    rest = _SCHEME.sub("", server_url.strip(), count=1)
    authority, slash, path = rest.partition("/")
    path = (slash + path).rstrip("/")
    host, port = _split_port(authority.lower())
    host = host.rstrip(".")
    if host in _DOCKER_HUB_HOSTS and port == "":
        return "docker.io" + ("" if path in _DOCKER_HUB_ROOT_PATHS else path)
    return host + port + path


def redacted(text: str) -> str:
    """The text with the password of every URL in it replaced: `https://alice:<redacted>@host/...`.

    The one function for every URL a person or a log may see (debug lines,
    error lines, command output): a registry or Vault address may carry
    credentials in its userinfo, and those are never shown.
    """
    if "@" not in text:
        return text
    text = _PASSWORD_IN_USERINFO.sub(lambda found: f"{found['start']}{found['user']}:{REDACTED}@", text)
    return _TOKEN_IN_USERINFO.sub(lambda found: f"{found['start']}{REDACTED}@", text)


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port), the port defaulted by the scheme: a credential goes only to the origin it is for."""
    from urllib.parse import urlsplit  # not on the hot path of `get`: only for network calls

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = -1  # not a port: matches no real origin
    return scheme, (parts.hostname or "").lower(), port


def is_loopback(host: str) -> bool:
    """localhost or a loopback IP literal (bracketed IPv6 too): traffic that never leaves the machine."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def registry_host(server_url: str) -> tuple[str, str]:
    """('host', ':port') of the registry, in canonical form (Docker Hub: 'docker.io'); port '' when absent."""
    return _split_port(canonical(server_url).partition("/")[0])


def _split_port(authority: str) -> tuple[str, str]:
    """('host', ':port') also for bracketed IPv6 literals; port '' when absent."""
    if authority.startswith("["):
        end = authority.find("]")
        if end != -1:
            return authority[: end + 1], authority[end + 1 :]
        return authority, ""
    host, colon, port = authority.rpartition(":")
    if colon and port.isdigit():
        return host, colon + port
    return authority, ""


def best_match(query: str, keys: Iterable[str]) -> Optional[str]:
    """The stored key that answers `query`: exact first, then canonical (ties: sorted order)."""
    keys = sorted(keys)
    if query in keys:
        debuglog.log("match", query=query, matched=query, how="exact")
        return query
    wanted = canonical(query)
    found = next((key for key in keys if canonical(key) == wanted), None)
    if debuglog.active():  # working out how two spellings met is for the log only, not every get
        how = f"none of {len(keys)} stored keys" if found is None else _how_matched(query, found)
        debuglog.log("match", query=query, matched=found, how=how, canonical=wanted)
    return found


def _how_matched(query: str, key: str) -> str:
    """Why two different spellings met, for the debug log."""
    if canonical(query).startswith("docker.io") and _authority(query) != _authority(key):
        return "Docker Hub alias"
    return "canonical form (scheme, case, trailing dot or slash)"


def _authority(server_url: str) -> str:
    return _SCHEME.sub("", server_url.strip(), count=1).partition("/")[0].lower().rstrip(".")


def same_registry(query: str, keys: Iterable[str]) -> list[str]:
    """Every stored key naming the query's registry: what `erase` must remove."""
    wanted = canonical(query)
    doomed = [key for key in keys if key == query or canonical(key) == wanted]
    debuglog.log("same registry", query=query, matched=doomed, canonical=wanted)
    return doomed
