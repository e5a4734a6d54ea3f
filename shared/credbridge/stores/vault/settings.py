"""Where docker-credential-vault finds its Vault and how it logs in, for one caller.

Environment first, then the `vault:` section of credbridge's configuration file, then defaults;
read per caller, as the agent serves many, each with its own HOME (docs/protocol.md section 5).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple, Optional

from credbridge import urls
from credbridge.errors import HelperError
from credbridge.files import config, secretfile, userdirs

DEFAULT_MOUNT = "secret"
DEFAULT_PREFIX = "credbridge/"
DEFAULT_TIMEOUT_SECONDS = 5.0
#: Go's strconv.ParseBool true values: what the vault CLI accepts for VAULT_SKIP_VERIFY.
TRUE_WORDS = frozenset({"1", "t", "T", "TRUE", "true", "True"})
AUTH_FIELDS = {"approle": ("role_id", "secret_id_file"), "jwt": ("role", "jwt_file")}


class Login(NamedTuple):
    """A configured auth method: `fields` name files, never secrets themselves."""

    method: str
    mount: str
    fields: dict[str, str]


class Settings(NamedTuple):
    addresses: tuple[str, ...]
    mount: str
    prefix: str
    namespace: Optional[str]
    verify: bool | str
    timeout: float
    token: Optional[str]
    token_source: str
    login: Optional[Login]


def warnings(settings: Settings) -> list[str]:
    """What the person using these settings must hear on every call: a channel anyone on the path can read."""
    found = []
    if settings.verify is False:
        found.append(
            f"VAULT_SKIP_VERIFY is set: the TLS certificate of Vault at {', '.join(settings.addresses)} is not "
            "checked, anyone on the path can read your credentials; set VAULT_CACERT to its CA instead"
        )
    plain = [
        address
        for address in settings.addresses
        if address.startswith("http://") and not urls.is_loopback(urls.origin(address)[1])
    ]
    if plain:
        found.append(
            f"the Vault address {', '.join(plain)} is plain http: the token and your credentials cross the "
            "network unencrypted; use https://"
        )
    return found


def env_value(env: Mapping[str, str], name: str) -> Optional[str]:
    """VAULT_<name>, else OpenBao's BAO_<name>; empty counts as unset."""
    return env.get(f"VAULT_{name}") or env.get(f"BAO_{name}") or None


def load(env: Mapping[str, str]) -> Settings:
    """The settings for this caller, or one actionable error line."""
    section = config.section(env, "vault")
    where = f"in `vault:` of {config.config_path(env)}"
    addresses = _addresses(env_value(env, "ADDR") or section.get("address"), where)
    cacert = env_value(env, "CACERT") or _text(section, "cacert", where)
    if cacert is not None and not os.access(cacert, os.R_OK):
        raise HelperError(
            f"cannot read the Vault CA certificate {cacert} (VAULT_CACERT or `cacert` {where}): "
            "name the PEM file of the CA that signed your Vault's certificate"
        )
    token, source = _token(env)
    return Settings(
        addresses=addresses,
        mount=(_text(section, "mount", where) or DEFAULT_MOUNT).strip("/"),
        prefix=_prefix(_text(section, "prefix", where)),
        namespace=env_value(env, "NAMESPACE") or _text(section, "namespace", where),
        verify=False if (env_value(env, "SKIP_VERIFY") or "") in TRUE_WORDS else (cacert or True),
        timeout=_timeout(section.get("timeout"), where),
        token=token,
        token_source=source,
        login=None if token else _login(section.get("auth"), where),
    )


def token_file(env: Mapping[str, str]) -> str:
    return os.path.join(userdirs.home(env), ".vault-token")


def _token(env: Mapping[str, str]) -> tuple[Optional[str], str]:
    for name in ("VAULT_TOKEN", "BAO_TOKEN"):
        if env.get(name, "").strip():
            return env[name].strip(), name
    return None, "the token helper file " + token_file(env)


def read_token_file(env: Mapping[str, str]) -> Optional[str]:
    """The token `bao login` / `vault login` left behind, None if there is none."""
    path = token_file(env)
    return _text_of(secretfile.read(path, "the Vault token file", missing_ok=True), path).strip() or None


def read_secret_file(path: str, what: str, issued: bool = False) -> str:
    """First line of a file holding a secret id or a JWT (rotated by its owner: read at each login);
    `issued`: the platform writes it (credbridge.files.secretfile)."""
    lines = _text_of(secretfile.read(path, f"the Vault {what} file", issued=issued), path).splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise HelperError(f"the Vault {what} file {path} is empty")
    return value


def _text_of(content: Optional[bytes], path: str) -> str:
    try:
        return (content or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise HelperError(f"{path} is not UTF-8 text: put the token alone in it") from None


def _addresses(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        raise HelperError(f"no Vault address: set VAULT_ADDR (e.g. https://vault.example:8200) or `address` {where}")
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise HelperError(f"`address` {where} must be a URL or a list of URLs")
    addresses = tuple(item.strip().rstrip("/") for item in items if item.strip())
    for address in addresses:
        if not address.startswith(("http://", "https://")):
            raise HelperError(f"the Vault address {address} must start with https:// (or http://)")
    if not addresses:
        raise HelperError(f"`address` {where} is empty")
    return addresses


def _text(section: Mapping[str, Any], key: str, where: str) -> Optional[str]:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise HelperError(f"`{key}` {where} must be a string")
    return value or None


def _prefix(value: Optional[str]) -> str:
    """No leading slash, exactly one trailing one (or empty: the mount's root)."""
    stripped = (DEFAULT_PREFIX if value is None else value).strip("/")
    return stripped + "/" if stripped else ""


def _timeout(value: Any, where: str) -> float:
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise HelperError(f"`timeout` {where} must be a positive number of seconds")
    return float(value)


def _login(value: Any, where: str) -> Optional[Login]:
    if value is None:
        return None
    method = value.get("method") if isinstance(value, dict) else None
    if method not in AUTH_FIELDS:
        raise HelperError(f"`auth` {where} needs `method: approle` or `method: jwt`")
    fields = {}
    for key in AUTH_FIELDS[method]:
        fields[key] = _text(value, key, where)
        if not fields[key]:
            raise HelperError(f"`auth` with method {method} {where} needs `{key}`")
    mount = _text(value, "mount", where) or method
    return Login(method, mount.strip("/"), fields)
