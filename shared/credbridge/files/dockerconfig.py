"""Docker-format config files (`config.json`, `auth.json`, Apptainer's `docker-config.json`).

Many programs share them, each knowing some keys: every key is kept in its order, and keys are
matched in any case as Go does (docs/compatibility.md, "Docker-format config files").
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from typing import Any, Mapping, Optional

from credbridge import debuglog, urls
from credbridge.errors import HelperError
from credbridge.files import atomicfile, userdirs
from credbridge.helperclient import is_helper_name
from credbridge.store import Credentials

#: The Username docker uses for an identity token (OAuth refresh token).
TOKEN_USERNAME = "<token>"
# json.dumps keeps <, >, & and U+2028/9 as they are; Go escapes them (only strings can hold them).
_GO_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
# json.dumps writes backspace and form feed as \b and \f; Go as \u0008 and \u000c.
_SHORT_B_OR_F = re.compile(r"(?<!\\)((?:\\\\)*)\\([bf])")

Config = dict[str, Any]


def load(path: str) -> Optional[Config]:
    """The file's content (None if absent); a file that is not a JSON object is an error naming it."""
    found = atomicfile.read(path)
    return None if found is None else parse(found[0], path)


def parse(data: bytes, path: str) -> Config:
    """A docker config's bytes read from `path`; anything but a JSON object is an error naming it"""
    try:
        config = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HelperError(
            f"{path} is not valid JSON ({error.__class__.__name__} at byte {getattr(error, 'pos', 0)}): fix or move it"
        ) from None
    except RecursionError:
        raise HelperError(f"{path} is nested too deeply to be a docker config file: fix or move it") from None
    if not isinstance(config, dict):
        raise HelperError(f"{path} is not a JSON object: fix or move it")
    return config


def dumps(config: Config) -> bytes:
    """Byte for byte as docker/cli writes it (Go's MarshalIndent with tabs), keys in the order given."""
    text = json.dumps(config, indent="\t", ensure_ascii=False).translate(_GO_HTML_ESCAPES)
    return _SHORT_B_OR_F.sub(
        lambda match: match.group(1) + ("\\u0008" if match.group(2) == "b" else "\\u000c"), text
    ).encode("utf-8")


def docker_config_path(env: Mapping[str, str]) -> str:
    """docker's own config.json: $DOCKER_CONFIG, else ~/.docker."""
    return os.path.join(env.get("DOCKER_CONFIG") or os.path.join(userdirs.home(env), ".docker"), "config.json")


def creds_store(env: Mapping[str, str]) -> Optional[str]:
    """The helper docker itself uses (`credsStore` of its config.json), the store a user already chose."""
    return default_helper(load(docker_config_path(env)) or {})


def save(path: str, config: Config) -> None:
    """Replace the file atomically (0600); the caller holds atomicfile.exclusive(path)."""
    atomicfile.replace(path, dumps(config))


def field(document: Config, name: str) -> Any:
    """A field as Go's decoder fills it: every key matching `name` in any case sets it, in the file's order
    (the last one wins), and a null leaves it as it was; None when no key sets it."""
    value = None
    for key in _keys_of(document, name):
        if document[key] is not None:
            value = document[key]
    return value


def set_field(document: Config, name: str, value: Any) -> None:
    """Set it where the programs read it: the last key matching `name`, else a new key `name`."""
    keys = _keys_of(document, name)
    document[keys[-1] if keys else name] = value


def remove_field(document: Config, name: str) -> None:
    for key in _keys_of(document, name):
        del document[key]


def auths(config: Config) -> dict[str, Any]:
    """registry -> entry, as the programs see them (see map_field)."""
    return map_field(config, "auths")


def map_field(config: Config, name: str) -> dict[str, Any]:
    """A map field as Go's decoder fills it: the objects of every matching key merged in order, a null emptying it."""
    merged: dict[str, Any] = {}
    for key in _keys_of(config, name):
        if config[key] is None:
            merged = {}
        elif isinstance(config[key], dict):
            merged.update(config[key])
    return merged


def set_in_map(config: Config, name: str, key: str, value: Any) -> None:
    """`name`[key] = value in every map holding the key (no older copy may stay), else in the last map."""
    maps = [config[found] for found in _keys_of(config, name) if isinstance(config[found], dict)]
    if not maps:
        set_field(config, name, {})
        maps = [field(config, name)]
    for holder in [held for held in maps if key in held] or maps[-1:]:
        holder[key] = value


def remove_from_map(config: Config, name: str, keys: list[str]) -> None:
    for found in _keys_of(config, name):
        if isinstance(config[found], dict):
            for key in keys:
                config[found].pop(key, None)


def _keys_of(document: Config, name: str) -> list[str]:
    """The keys Go's encoding/json decodes into the field `name`: equal under Unicode simple case folding,
    which for an ASCII name adds only the long s (ſ ~ s) and the Kelvin sign (K ~ k, which lower() maps)."""
    folded = name.lower()
    return [key for key in document if key == name or key.replace("\u017f", "s").lower() == folded]


def entry_credentials(server_url: str, entry: Any) -> Optional[Credentials]:
    """The credentials an `auths` entry holds; None for a helper marker `{}` or an unusable entry."""
    if not isinstance(entry, dict):
        return None
    token = field(entry, "identitytoken")
    if token:
        return Credentials(server_url, TOKEN_USERNAME, str(token))
    encoded = field(entry, "auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        username, colon, secret = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return Credentials(server_url, username, secret) if colon else None


def credentials_entry(credentials: Credentials) -> dict[str, str]:
    """The `auths` entry docker/cli writes for these credentials."""
    if credentials.username == TOKEN_USERNAME:
        return {"identitytoken": credentials.secret}
    return {"auth": base64.b64encode(f"{credentials.username}:{credentials.secret}".encode()).decode("ascii")}


def helper_for(config: Config, server_url: str) -> Optional[str]:
    """The helper docker/cli would ask for this server: `credHelpers` by registry, else `credsStore`."""
    per_registry = registry_helpers(config)
    match = urls.best_match(server_url, per_registry)
    return per_registry[match] if match is not None else default_helper(config)


def registry_helpers(config: Config) -> dict[str, str]:
    """`credHelpers`: registry -> helper name, the unusable names left out."""
    return {
        registry: name
        for registry, name in map_field(config, "credHelpers").items()
        if _usable_helper_name(name, "credHelpers")
    }


def default_helper(config: Config) -> Optional[str]:
    """`credsStore`, None when unset or unusable."""
    store = field(config, "credsStore")
    return store if _usable_helper_name(store, "credsStore") else None


def _usable_helper_name(name: object, key: str) -> bool:
    """A name, never a path: `x/../evil` would run ./evil from wherever the helper runs."""
    if name == "" or name is None:
        return False
    if not is_helper_name(name):
        debuglog.log("not a helper name: left unused", key=key, name=str(name))
        return False
    return True
