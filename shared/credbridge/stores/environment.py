"""Logins handed over in environment variables: a read-only source of the router.

CI jobs and batch scripts pass credentials in the environment rather than logging in. A variable
is offered only to the registries it is bound to by value, never by a name mangled out of a host
(docs/design.md, "environment").
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, NamedTuple, Optional

from credbridge import debuglog, urls
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.files import dockerconfig
from credbridge.store import Credentials
from credbridge.stores.router import routing

PER_REGISTRY_PREFIX = "CREDBRIDGE_AUTH_"
SCOPE_VARIABLE = "CREDBRIDGE_ENV_REGISTRIES"
AUTH_CONFIG_VARIABLE = "DOCKER_AUTH_CONFIG"
AUTH_CONFIG_FIX = "set it to a docker config.json, or unset it"
SCOPE_FIX = f"correct or remove it in {SCOPE_VARIABLE}"
#: Apptainer's order: its own names, then SingularityCE's, then the bare docker ones.
GLOBAL_PAIRS = (
    ("APPTAINER_DOCKER_USERNAME", "APPTAINER_DOCKER_PASSWORD"),
    ("SINGULARITY_DOCKER_USERNAME", "SINGULARITY_DOCKER_PASSWORD"),
    ("DOCKER_USERNAME", "DOCKER_PASSWORD"),
)
_BINDING_PART = re.compile(r"^CREDBRIDGE_AUTH_(.+)_(REGISTRY|USERNAME|PASSWORD)$")


class EnvironmentLogin(NamedTuple):
    """One login the environment holds, for `doctor` and `config`: names, never values."""

    variables: tuple[str, ...]
    registries: tuple[str, ...]  # what it is offered to (route patterns for the global pairs)
    problem: str = ""  # why it is offered to nothing, or to less than it seems; "" when fine
    fix: str = ""  # what to do about the problem


class EnvironmentSource:
    """The caller's environment, read on every call (the agent serves many environments)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, server_url: str) -> Credentials:
        """The first kind's answer, each mistake warned; with no answer, the first mistake of a kind is the error
        (a bad scope pattern stays a warning: the pairs it would have named are simply not offered)."""
        found, mistakes = self._lookup(server_url)
        for problem in scope_problems(self._env):
            debuglog.warn(f"{problem}: {SCOPE_FIX}")
        if found is None and mistakes:
            for mistake in mistakes[1:]:
                debuglog.warn(mistake)
            raise HelperError(mistakes[0])
        for mistake in mistakes:
            debuglog.warn(mistake)
        if found is None:
            raise CredentialsNotFound()
        return Credentials(server_url, *found)

    def _lookup(self, server_url: str) -> tuple[Optional[tuple[str, str]], list[str]]:
        """(the first kind's answer or None, what is wrong with each kind): one bad kind never stops another."""
        answers, mistakes = [], []
        for kind in (_bound_pair, _auth_config_entry, _global_pair):
            try:
                answers.append(kind(self._env, server_url))
            except HelperError as error:
                mistakes.append(str(error))
        return next((found for found in answers if found is not None), None), mistakes

    def store(self, credentials: Credentials) -> None:
        raise HelperError("the environment is a read-only credential source: route this registry to a store")

    def erase(self, server_url: str) -> None:
        """Nothing to erase: what the environment holds ends with the process that set it."""

    def list(self) -> dict[str, str]:
        """Each login bound to one exact registry, keyed by that registry, spelled as bound."""
        listed: dict[str, str] = {}
        for registry in _listable_registries(self._env):
            found, mistakes = self._lookup(registry)
            if found is None:  # ambiguous or half bound: `doctor` and `config` say why
                debuglog.log("environment list skips", registry=registry, mistakes=mistakes)
            else:
                listed.setdefault(registry, found[0])
        return listed


# -- CREDBRIDGE_AUTH_<NAME>_* ---------------------------------------------------------------------


def _bindings(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """NAME -> {REGISTRY|USERNAME|PASSWORD: variable name} for every non-empty part set."""
    found: dict[str, dict[str, str]] = {}
    for variable in sorted(env):
        match = _BINDING_PART.match(variable)
        if match and env[variable]:
            found.setdefault(match.group(1), {})[match.group(2)] = variable
    return found


def _bound_registry(env: Mapping[str, str], parts: Mapping[str, str]) -> Optional[str]:
    """The one registry a NAME is bound to, canonical; None when unbound or not one host[:port]."""
    variable = parts.get("REGISTRY")
    return routing.exact_registry(env[variable]) if variable else None


def _bound_pair(env: Mapping[str, str], server_url: str) -> Optional[tuple[str, str]]:
    wanted = urls.canonical(server_url)
    names = [name for name, parts in _bindings(env).items() if _bound_registry(env, parts) == wanted]
    if not names:
        return None
    if len(names) > 1:
        bound = " and ".join(f"{PER_REGISTRY_PREFIX}{name}_REGISTRY" for name in names)
        raise HelperError(f"{bound} bind the same registry {wanted}: unset all but one of them")
    stem = PER_REGISTRY_PREFIX + names[0]
    username, password = env.get(stem + "_USERNAME"), env.get(stem + "_PASSWORD")
    if not username or not password:
        missing = stem + ("_PASSWORD" if username else "_USERNAME")
        raise HelperError(f"{stem}_REGISTRY binds {wanted} but {missing} is not set: set it, or unset {stem}_REGISTRY")
    debuglog.log("environment", server=server_url, variables=f"{stem}_*")
    return username, password


# -- DOCKER_AUTH_CONFIG ---------------------------------------------------------------------------


def _auth_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The `auths` of DOCKER_AUTH_CONFIG ({} when unset); a bad value is one line that never quotes it."""
    auths, problem = _read_auth_config(env)
    if problem:
        raise HelperError(f"{problem}: {AUTH_CONFIG_FIX}")
    return auths


def _read_auth_config(env: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """(auths, "") or ({}, what is wrong with the variable)."""
    text = env.get(AUTH_CONFIG_VARIABLE, "")
    if not text.strip():
        return {}, ""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return {}, f"{AUTH_CONFIG_VARIABLE} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
    if not isinstance(document, dict) or not isinstance(document.get("auths", {}), dict):
        return {}, f"{AUTH_CONFIG_VARIABLE} is not a docker config.json (an object with an `auths` object)"
    return document.get("auths", {}), ""


def _auth_config_entry(env: Mapping[str, str], server_url: str) -> Optional[tuple[str, str]]:
    auths = _auth_config(env)
    key = urls.best_match(server_url, auths)
    found = None if key is None else _entry_credentials(key, auths[key])
    if found is None:
        return None
    debuglog.log("environment", server=server_url, variables=AUTH_CONFIG_VARIABLE, key=key)
    return found.username, found.secret


def _entry_credentials(key: str, entry: Any) -> Optional[Credentials]:
    """As docker reads an entry: `identitytoken`, else `auth`, else the `username`/`password` fields."""
    found = dockerconfig.entry_credentials(key, entry)
    if found is not None or not isinstance(entry, dict) or entry.get("auth"):
        return found
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username and password:
        return Credentials(key, username, password)
    return None


# -- the global pairs -----------------------------------------------------------------------------


def _scope_entries(env: Mapping[str, str]) -> list[str]:
    entries = [pattern.strip().lower() for pattern in env.get(SCOPE_VARIABLE, "").split(",")]
    return [entry for entry in entries if entry]


def scope_patterns(env: Mapping[str, str]) -> list[str]:
    """The valid route patterns of CREDBRIDGE_ENV_REGISTRIES, lower-cased."""
    return [pattern for pattern in _scope_entries(env) if routing.is_pattern(pattern)]


def scope_problems(env: Mapping[str, str]) -> list[str]:
    """One line for each entry of CREDBRIDGE_ENV_REGISTRIES that is ignored, and why."""
    return [
        f"{entry!r} in {SCOPE_VARIABLE} is not {routing.PATTERN_RULE}, so it is ignored"
        for entry in _scope_entries(env)
        if not routing.is_pattern(entry)
    ]


def _scope_shown(pattern: str) -> str:
    """The pattern as it matches: without a port it is the default port only, which a reader might not guess."""
    return pattern if routing.pattern_parts(pattern)[2] else f"{pattern} (default port only)"


def _global_pair(env: Mapping[str, str], server_url: str) -> Optional[tuple[str, str]]:
    if not any(routing.scope_matches(pattern, server_url) for pattern in scope_patterns(env)):
        if any(env.get(name) for pair in GLOBAL_PAIRS for name in pair):
            debuglog.log("environment pairs not offered", server=server_url, because=f"not in {SCOPE_VARIABLE}")
        return None
    for username_name, password_name in GLOBAL_PAIRS:
        username, password = env.get(username_name), env.get(password_name)
        if username and password:
            debuglog.log("environment", server=server_url, variables=f"{username_name}/{password_name}")
            return username, password
        if username or password:
            debuglog.log("environment ignores half a pair", set=username_name if username else password_name)
    return None


# -- what doctor, config and list show ------------------------------------------------------------


def _listable_registries(env: Mapping[str, str]) -> list[str]:
    """Every exact registry some variable binds (wildcards in CREDBRIDGE_ENV_REGISTRIES cannot be listed)."""
    bound = [_bound_registry(env, parts) for parts in _bindings(env).values()]
    configured = list(_read_auth_config(env)[0])
    scoped = [pattern for pattern in scope_patterns(env) if "*" not in pattern]
    first_spelling: dict[str, str] = {}
    for registry in [*bound, *configured, *scoped]:
        if registry:
            first_spelling.setdefault(urls.canonical(registry), registry)
    return list(first_spelling.values())


def environment_logins(env: Mapping[str, str]) -> list[EnvironmentLogin]:
    """Every credential the environment holds, with the registries it goes to and what is wrong with it."""
    return [*_binding_logins(env), *_auth_config_logins(env), *_global_logins(env), *_scope_logins(env)]


def _scope_logins(env: Mapping[str, str]) -> list[EnvironmentLogin]:
    return [EnvironmentLogin((SCOPE_VARIABLE,), (), problem, SCOPE_FIX) for problem in scope_problems(env)]


def _binding_logins(env: Mapping[str, str]) -> list[EnvironmentLogin]:
    bindings = _bindings(env)
    registries = {name: _bound_registry(env, parts) for name, parts in bindings.items()}
    logins = []
    for name, parts in bindings.items():
        stem, registry = PER_REGISTRY_PREFIX + name, registries[name]
        variables = tuple(parts[part] for part in ("REGISTRY", "USERNAME", "PASSWORD") if part in parts)
        others = [other for other, bound in registries.items() if other != name and bound and bound == registry]
        if "REGISTRY" not in parts:
            problem, fix = "offered to no registry", f"set {stem}_REGISTRY=<registry host[:port]> to use it"
        elif registry is None:
            problem, fix = f"{stem}_REGISTRY is not one registry host[:port]", "name one registry, no path or wildcard"
        elif others:
            problem, fix = f"{PER_REGISTRY_PREFIX}{others[0]}_REGISTRY binds it too", "unset one of them"
        elif len(variables) < 3:
            problem, fix = "half a pair", f"set both {stem}_USERNAME and {stem}_PASSWORD"
        else:
            problem, fix = "", ""
        logins.append(EnvironmentLogin(variables, (registry,) if registry else (), problem, fix))
    return logins


def _auth_config_logins(env: Mapping[str, str]) -> list[EnvironmentLogin]:
    if not env.get(AUTH_CONFIG_VARIABLE, "").strip():
        return []
    auths, problem = _read_auth_config(env)
    if problem:
        return [EnvironmentLogin((AUTH_CONFIG_VARIABLE,), (), problem, AUTH_CONFIG_FIX)]
    usable = tuple(key for key, entry in auths.items() if _entry_credentials(key, entry) is not None)
    if usable:
        return [EnvironmentLogin((AUTH_CONFIG_VARIABLE,), usable)]
    return [EnvironmentLogin((AUTH_CONFIG_VARIABLE,), (), "holds no login", "add `auth` entries under `auths`")]


def _global_logins(env: Mapping[str, str]) -> list[EnvironmentLogin]:
    scope = tuple(_scope_shown(pattern) for pattern in scope_patterns(env))
    logins, first = [], None
    for pair in GLOBAL_PAIRS:
        present = tuple(name for name in pair if env.get(name))
        if not present:
            continue
        if len(present) == 1:
            missing = pair[1] if present[0] == pair[0] else pair[0]
            problem, fix = "half a pair, ignored", f"set {missing} too, if this is a login"
        elif not scope:
            problem, fix = "offered to no registry", f"set {SCOPE_VARIABLE}=docker.io to use it"
        elif first is not None:
            problem, fix = f"never used: {first[0]}/{first[1]} comes first", f"unset {present[0]} and {present[1]}"
        else:
            problem, fix = "", ""
        if len(present) == 2:
            first = first or pair
        logins.append(EnvironmentLogin(present, scope if len(present) == 2 and not problem else (), problem, fix))
    return logins
