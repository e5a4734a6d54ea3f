"""One caller's connection to Vault/OpenBao: token, failover, errors a person can act on.

hvac is imported only when a call is made; requests are bounded by the configured timeout, and the
token goes only to the configured addresses (docs/design.md, "vault"; docs/trust.md).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional, TypeVar

from credbridge import debuglog, urls
from credbridge.errors import HelperError, Refused, StoreUnavailable
from credbridge.stores.vault import settings as vaultsettings

T = TypeVar("T")
RETRY_PAUSE_SECONDS = 0.2
#: After a failover hiccup, a new active node answers 404 for a moment before its KV mount is ready:
#: a "not found" that soon after trouble is asked again until this much time has passed.
SETTLE_SECONDS = 2.0
#: A login token is renewed by a new login this long before Vault says it expires.
LOGIN_MARGIN = 0.9


class Denied(Refused):
    """The token is valid but its policies do not allow the operation."""


class RedirectRefused(HelperError):
    """An address answered with a redirect to a server that is not configured: the token is not sent there."""


class Connection:
    """What a store needs from Vault: `reload()`, then `call(operation, path, capabilities)`; kept by the agent
    between calls."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self.settings: vaultsettings.Settings = None  # type: ignore[assignment]  # set by reload(), first thing of every operation
        self._clients: dict[str, Any] = {}
        self._login_token: Optional[tuple[str, float]] = None
        self._last_trouble = float("-inf")  # monotonic time of the last transient failure seen

    def reload(self) -> None:
        """Settings again from the environment and the config file: the agent keeps a store for long,
        an edited config.yaml must take effect at the next call (a changed one drops clients and login)."""
        settings = vaultsettings.load(self._env)
        if settings != self.settings:
            self.settings, self._clients, self._login_token = settings, {}, None
        for warning in vaultsettings.warnings(settings):
            debuglog.warn(warning)

    def call(self, operation: Callable[[Any], T], path: str, capabilities: tuple[str, ...]) -> T:
        """Run `operation(hvac_client)` on the first address that serves it.

        `path` and `capabilities` name what a policy must allow, for the message when it does not.
        """
        from hvac.exceptions import Forbidden

        token, source = self._token()
        try:
            return self._failover(operation, token)
        except Forbidden:
            self._explain_refusal(token, source, path, capabilities, may_log_in_again=self._login_token is not None)
        self._login_token = None  # a login token revoked or cut short: one new login, then give up
        token, source = self._token()
        try:
            return self._failover(operation, token)
        except Forbidden:
            self._explain_refusal(token, source, path, capabilities, may_log_in_again=False)
            raise

    def _explain_refusal(
        self, token: str, source: str, path: str, capabilities: tuple[str, ...], may_log_in_again: bool
    ) -> None:
        """Raise the line that says why Vault answered 403, unless a new login may fix it."""
        from hvac.exceptions import Forbidden

        try:
            self._failover(lambda client: client.auth.token.lookup_self(), token)
        except Forbidden:
            if may_log_in_again:
                return
            raise HelperError(
                f"the Vault token from {source} is invalid or expired (or lacks the `default` policy "
                "that lets it look itself up): log in again (`bao login`) or set a fresh VAULT_TOKEN"
            ) from None
        wanted = ", ".join(f'"{capability}"' for capability in capabilities)
        raise Denied(
            f"permission denied on {path}: the policy of the Vault token from {source} "
            f"needs capabilities = [{wanted}] there"
        ) from None

    # -- tokens --------------------------------------------------------------

    def _token(self) -> tuple[str, str]:
        """(token, where it came from); the source is shown in errors, the token never."""
        settings = self.settings
        if settings.token:
            return settings.token, settings.token_source
        if settings.login is not None:
            login = settings.login
            source = f"the {login.method} login at auth/{login.mount}"
            if self._login_token is None or time.monotonic() >= self._login_token[1]:
                self._login_token = self._log_in(login, source)
            return self._login_token[0], source
        token = vaultsettings.read_token_file(self._env)
        if token is None:
            raise HelperError(
                "no Vault token: set VAULT_TOKEN, run `bao login` (it writes ~/.vault-token), "
                "or configure `auth:` in `vault:` of the credbridge configuration"
            )
        return token, settings.token_source

    def _log_in(self, login: vaultsettings.Login, source: str) -> tuple[str, float]:
        from hvac.exceptions import VaultError

        if login.method == "approle":
            secret_id = vaultsettings.read_secret_file(login.fields["secret_id_file"], "AppRole secret id")
            operation: Callable[[Any], Any] = lambda client: client.auth.approle.login(  # noqa: E731
                login.fields["role_id"], secret_id, use_token=False, mount_point=login.mount
            )
        else:
            jwt = vaultsettings.read_secret_file(login.fields["jwt_file"], "JWT", issued=True)
            operation = lambda client: client.auth.jwt.jwt_login(  # noqa: E731
                login.fields["role"], jwt, use_token=False, path=login.mount
            )
        try:
            auth = self._failover(operation, "")["auth"]
        except VaultError:
            files = "role_id and secret_id_file" if login.method == "approle" else "role and jwt_file"
            raise HelperError(
                f"{source} was refused: check {files} in `vault: auth:` and that the "
                f"{login.method} auth method is enabled at auth/{login.mount}"
            ) from None
        lifetime = float(auth.get("lease_duration") or 0)
        expires = time.monotonic() + lifetime * LOGIN_MARGIN if lifetime else float("inf")
        return auth["client_token"], expires

    # -- addresses -----------------------------------------------------------

    def _client(self, address: str, token: str) -> Any:
        client = self._clients.get(address)
        if client is None:
            import hvac
            import requests

            session = requests.Session()
            session.trust_env = False  # the agent never sees the caller's proxy or netrc: neither does a direct call
            session.verify = self.settings.verify  # hvac takes a given session's verify over its own argument
            session.hooks["response"].append(self._refuse_redirects_elsewhere)
            if self.settings.verify is False:
                import urllib3

                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # warned once per call, by reload()
            client = self._clients[address] = hvac.Client(
                address,
                token=token,
                verify=self.settings.verify,
                timeout=self.settings.timeout,
                session=session,
                namespace=self.settings.namespace,
            )
        client.token = token
        return client

    def _refuse_redirects_elsewhere(self, response: Any, *_args: Any, **_kwargs: Any) -> None:
        """A requests response hook, run before a redirect is followed: only to a configured address."""
        if not response.is_redirect:
            return
        from urllib.parse import urljoin

        scheme, host, port = urls.origin(urljoin(response.url, response.headers["location"]))
        if (scheme, host, port) not in {urls.origin(address) for address in self.settings.addresses}:
            raise RedirectRefused(f"redirected to {scheme}://{host}:{port}, not a configured address")

    def _failover(self, operation: Callable[[Any], T], token: str) -> T:
        """Each address in order; network trouble and sealed nodes move on, transient trouble retries."""
        import requests
        from hvac.exceptions import (
            BadGateway,
            InternalServerError,
            InvalidPath,
            InvalidRequest,
            VaultDown,
            VaultNotInitialized,
        )

        deadline = time.monotonic() + self.settings.timeout
        while True:
            failures: list[str] = []
            transient = settling = False
            for address in self.settings.addresses:
                try:
                    answer = operation(self._client(address, token))
                    debuglog.log("vault answered", address=address, after_failures=failures)
                    return answer
                except requests.exceptions.RequestException as error:
                    failures.append(f"{address} ({_network_reason(error)})")
                except RedirectRefused as error:
                    failures.append(f"{address} ({error})")
                except VaultDown as error:
                    sealed = "sealed" in " ".join(error.errors or []).lower()
                    transient = transient or not sealed
                    failures.append(f"{address} ({'sealed' if sealed else 'unavailable'})")
                except VaultNotInitialized:
                    failures.append(f"{address} (not initialised)")
                except (InternalServerError, BadGateway):
                    transient = True  # e.g. a standby that has not found the new active node yet
                    failures.append(f"{address} (no active node)")
                except InvalidRequest as error:
                    if "unavailable for a brief period" not in " ".join(error.errors or []):
                        raise
                    transient = True  # a new active node still preparing its KV mount
                    failures.append(f"{address} (failing over)")
                except InvalidPath:
                    if time.monotonic() - self._last_trouble >= SETTLE_SECONDS or time.monotonic() >= deadline:
                        raise
                    settling = True  # not found, so soon after a failover: ask again before believing it
                    break
            if transient:
                self._last_trouble = time.monotonic()
            elif not settling:
                raise StoreUnavailable(_unreachable(failures))
            if transient and time.monotonic() + RETRY_PAUSE_SECONDS >= deadline:
                raise StoreUnavailable(_unreachable(failures))
            time.sleep(RETRY_PAUSE_SECONDS)


def _unreachable(failures: list[str]) -> str:
    tried = "; ".join(failures)
    if all(failure.endswith("(sealed)") for failure in failures):
        return f"Vault is sealed at {tried}: unseal it (`bao operator unseal`) or ask its operators"
    return f"cannot use Vault at {tried}: check VAULT_ADDR (or `address` in `vault:`) and that the server is up"


def _network_reason(error: Exception) -> str:
    """A short cause from requests' nested exceptions; never the request itself."""
    import requests

    text = str(error).lower()
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS certificate not trusted: set VAULT_CACERT" if "certificate" in text else "TLS handshake failed"
    if isinstance(error, requests.exceptions.Timeout):
        return "no answer within the timeout"
    for needle, reason in (
        ("refused", "connection refused"),
        ("name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("unreachable", "network unreachable"),
    ):
        if needle in text:
            return reason
    return "connection failed"
