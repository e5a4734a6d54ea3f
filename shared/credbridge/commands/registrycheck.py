"""Does the registry accept these credentials? The check docker and podman make before storing.

The registry API v2 challenge, Basic or Bearer (docs/protocol.md section 7); the password never
follows a redirect elsewhere (docs/trust.md).
"""

from __future__ import annotations

import base64
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from credbridge import urls
from credbridge.errors import HelperError
from credbridge.urls import registry_host

TIMEOUT_SECONDS = 15.0
DOCKER_HUB_API = "registry-1.docker.io"
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class _SameOriginForCredentials(urllib.request.HTTPRedirectHandler):
    """Follows a redirect carrying an Authorization header only within the origin it was sent to."""

    def redirect_request(self, req: urllib.request.Request, fp, code: int, msg: str, headers, newurl: str):  # type: ignore[no-untyped-def]
        if req.has_header("Authorization") and urls.origin(newurl) != urls.origin(req.full_url):
            raise HelperError(
                f"the registry redirected the login check from {req.full_url} to {newurl}: "
                "credentials go only to the server asked; "
                "log in to that registry by its own name if you trust it"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(target: "str | urllib.request.Request"):  # type: ignore[no-untyped-def]
    """Opens http(s) URLs only, with certificate checks, a timeout and the same-origin rule for credentials.

    Built by hand because build_opener adds urllib's file, ftp and data handlers: a challenge naming a
    local file or a data: URL would then read as the token service's yes, and a pipe would block forever.
    """
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        urllib.request.HTTPDefaultErrorHandler(),
        _SameOriginForCredentials(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener.open(target, timeout=TIMEOUT_SECONDS)


def verify(server_url: str, username: str, secret: str) -> None:
    """Returns when the registry accepts the login; HelperError saying why not otherwise."""
    host, port = registry_host(server_url)
    authority = (DOCKER_HUB_API if host == "docker.io" and not port else host) + port
    basic = "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()
    errors = []
    for scheme in ("https", "http") if urls.is_loopback(host) else ("https",):
        url = f"{scheme}://{authority}/v2/"
        try:
            challenge = _challenge(url)
        except OSError as error:
            errors.append(f"{url}: {_reason(error)}")
            continue
        if challenge is None:
            return  # the registry asks for no credentials
        _answer(url, challenge, basic, username, server_url)
        return
    raise HelperError(f"cannot reach the registry ({'; '.join(errors)})")


def _challenge(url: str) -> Optional[str]:
    """The WWW-Authenticate header of the 401, or None when /v2/ is open."""
    try:
        with _open(url):
            return None
    except urllib.error.HTTPError as error:
        if error.code == 401:
            return error.headers.get("WWW-Authenticate", "")
        raise HelperError(f"{url} answered {error.code} {error.reason}: is this a container registry?") from None


def _answer(url: str, challenge: str, basic: str, username: str, server_url: str) -> None:
    scheme, _, parameters = challenge.partition(" ")
    if scheme.lower() == "basic":
        target = urllib.request.Request(url, headers={"Authorization": basic})
    elif scheme.lower() == "bearer":
        params = dict(_CHALLENGE_PARAM.findall(parameters))
        if "realm" not in params:
            raise HelperError(f"{url} asks for a bearer token but names no token service (realm)")
        query = {"account": username, **{key: params[key] for key in ("service", "scope") if key in params}}
        target = urllib.request.Request(_token_url(url, params["realm"], query), headers={"Authorization": basic})
    else:
        raise HelperError(f"{url} asks for {scheme or 'an unnamed'} authentication, which docker logins cannot answer")
    try:
        with _open(target):
            return
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise HelperError(f"the registry {server_url} refused the username or password") from None
        raise HelperError(f"the registry's login check answered {error.code} {error.reason}") from None
    except OSError as error:
        raise HelperError(f"the registry's token service is out of reach: {_reason(error)}") from None


def _token_url(url: str, realm: str, query: dict[str, str]) -> str:
    """The token service's URL with the query added, when the password may go there.

    Like docker, the password goes to whatever host the registry names as its token service; unlike
    docker, only over https, or plain http while it stays on this machine (a loopback token service, or
    a loopback registry itself asked over http): a registry asked over TLS never downgrades the password
    to clear text on the network.
    """
    parts = urllib.parse.urlsplit(realm)
    scheme = parts.scheme.lower()
    plain_http_stays_here = urls.is_loopback(parts.hostname or "") or url.startswith("http:")
    if not parts.hostname or scheme not in ("https", "http") or (scheme == "http" and not plain_http_stays_here):
        raise HelperError(
            f"{url} names {urls.redacted(realm)!r} as its token service, and credbridge sends a "
            "password only to an https token service (plain http only on this machine): "
            "ask the registry's operator to serve its tokens over https"
        )
    merged = "&".join(part for part in (parts.query, urllib.parse.urlencode(query)) if part)
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, merged, ""))


def _reason(error: OSError) -> str:
    reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
    return str(getattr(reason, "strerror", None) or reason)
