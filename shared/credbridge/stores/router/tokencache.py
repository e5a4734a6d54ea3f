"""The agent's memory of what token-minting helpers answered (ecr-login, gcr, acr-env, ...).

Those helpers call a cloud API on every `get`, and a build asks for every
registry again and again. The agent keeps each answer per (helper,
canonical registry, the environment the helper received), in memory only:
a token for as long as it says it lives (a JWT's `exp`, an ECR token's
`expiration`), else the route's `ttl`, else DEFAULT_TTL_SECONDS, served
until a safety margin before that and refreshed in the background before
the margin, so no `get` waits for a refresh. "Not found" is kept briefly,
a failure of the helper for a short back-off (a helper not installed is
looked for again at once). `credbridge lock`, `login`, `logout`, a store
or erase of the registry and the agent's exit forget it; all but a store or erase
(one registry) also remove the token files helpers wrote in the agent's directory
(credbridge.stores.router.helperfiles). Served in process, nothing is kept and the
helper is asked each time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from typing import TYPE_CHECKING, Callable, Mapping, NamedTuple, Optional

from credbridge import debuglog, urls
from credbridge.errors import CredentialsNotFound, HelperError
from credbridge.helperclient import HelperNotRunnable
from credbridge.store import Credentials

if TYPE_CHECKING:
    from credbridge.stores.router.helperfiles import HelperFiles

#: A token that does not say how long it lives, on a route without `ttl`.
DEFAULT_TTL_SECONDS = 60.0
#: Served until min(this, a tenth of its life) before it expires: clocks drift, pulls take time.
SAFETY_MARGIN_SECONDS = 60.0
#: Refreshed from min(this, a quarter of its usable life) before it stops being served.
REFRESH_LEAD_SECONDS = 300.0
NOT_FOUND_SECONDS = 10.0
BACKOFF_SECONDS = 10.0
MAX_ENTRIES = 256
#: Longer secrets are not decoded to look for an expiry.
MAX_TOKEN_CHARS = 64 * 1024

Key = tuple[str, str, str]
#: Asks the helper; raises CredentialsNotFound when it has no login.
Fetch = Callable[[], Credentials]


class _Entry(NamedTuple):
    found: Optional[Credentials]  # None: not found
    error: str  # "" unless the helper failed
    serve_until: float
    refresh_at: float
    generation: int

    def answer(self) -> Credentials:
        if self.error:
            raise HelperError(self.error)
        if self.found is None:
            raise CredentialsNotFound()
        return self.found


class TokenCache:
    """Entries by Key; one fetch at a time per key, a get never waits for a background refresh;
    `files`: where the helpers keep their own token files, removed when every answer is forgotten."""

    def __init__(self, files: Optional[HelperFiles] = None) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._entries: dict[Key, _Entry] = {}
        self._fetching: dict[Key, threading.Lock] = {}
        self._refreshing: set[Key] = set()
        self._generation = 0

    def get(self, key: Key, fetch: Fetch, ttl: Optional[float]) -> Credentials:
        """The cached answer while it may be served, else the helper's (which is then kept)."""
        entry = self._usable(key)
        if entry is None:
            with self._fetch_lock(key):
                entry = self._usable(key)  # a concurrent get may have fetched it meanwhile
                if entry is None:
                    return self._fetch(key, fetch, ttl)
        debuglog.log("token cache: served from memory", helper=key[0], registry=key[1])
        if entry.found is not None and time.monotonic() >= entry.refresh_at:
            self._refresh_in_background(key, fetch, ttl)
        return entry.answer()

    def forget(self, helper: str, server_url: str) -> None:
        """Every answer of `helper` for this registry, whatever the environment (store, erase)."""
        registry = urls.canonical(server_url)
        with self._lock:
            for key in [key for key in self._entries if key[:2] == (helper, registry)]:
                del self._entries[key]
                self._fetching.pop(key, None)
            self._generation += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._fetching.clear()
            self._generation += 1
        if self._files is not None:
            self._files.remove()

    def files_directory(self, helper: str) -> Optional[str]:
        """A private directory for `helper`'s own token file (helperenv.OWN_TOKEN_FILES), if any."""
        return self._files.directory(helper) if self._files is not None else None

    def _usable(self, key: Key) -> Optional[_Entry]:
        with self._lock:
            entry = self._entries.get(key)
        return entry if entry is not None and time.monotonic() < entry.serve_until else None

    def _fetch_lock(self, key: Key) -> threading.Lock:
        with self._lock:
            return self._fetching.setdefault(key, threading.Lock())

    def _fetch(self, key: Key, fetch: Fetch, ttl: Optional[float]) -> Credentials:
        generation = self._generation
        started = time.monotonic()
        try:
            found = _fetched(fetch)
        except HelperNotRunnable:
            raise  # installing it is the fix: the next call must see it at once
        except HelperError as error:
            line = f"{error} (not asked again for {BACKOFF_SECONDS:g} s)"
            until = time.monotonic() + BACKOFF_SECONDS
            self._keep(key, _Entry(None, line, until, float("inf"), generation))
            raise HelperError(line) from None
        self._keep(key, _entry_for(found, ttl, started, generation))
        if found is None:
            raise CredentialsNotFound()
        return found

    def _refresh_in_background(self, key: Key, fetch: Fetch, ttl: Optional[float]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
        threading.Thread(target=self._refresh, args=(key, fetch, ttl), daemon=True).start()

    def _refresh(self, key: Key, fetch: Fetch, ttl: Optional[float]) -> None:
        """A failed refresh keeps the old token until it stops being served; then a get asks."""
        try:
            with self._fetch_lock(key):
                generation = self._generation
                started = time.monotonic()
                try:
                    found = _fetched(fetch)
                except HelperError as error:
                    debuglog.log("token cache: refresh failed", helper=key[0], error=str(error))
                    return
                self._keep(key, _entry_for(found, ttl, started, generation))
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _keep(self, key: Key, entry: Optional[_Entry]) -> None:
        with self._lock:
            if entry is None or entry.generation != self._generation:
                self._entries.pop(key, None)
                return  # forgotten (lock, erase) while the helper was being asked
            if key not in self._entries and len(self._entries) >= MAX_ENTRIES:
                oldest = min(self._entries, key=lambda old: self._entries[old].serve_until)
                del self._entries[oldest]
                self._fetching.pop(oldest, None)
            self._entries[key] = entry


def _fetched(fetch: Fetch) -> Optional[Credentials]:
    """The helper's answer, None for its "not found": an answer the cache keeps too, unlike a failure."""
    try:
        return fetch()
    except CredentialsNotFound:
        return None


def _entry_for(found: Optional[Credentials], ttl: Optional[float], started: float, generation: int) -> Optional[_Entry]:
    """How long an answer is served and when it is refreshed; None: about to expire, not kept."""
    if found is None:
        return _Entry(None, "", started + NOT_FOUND_SECONDS, float("inf"), generation)
    expiry = token_expiry(found.secret)
    lifetime = expiry - time.time() if expiry is not None else ttl or DEFAULT_TTL_SECONDS
    usable = lifetime - min(SAFETY_MARGIN_SECONDS, lifetime / 10)
    if usable <= 0:
        return None
    refresh_at = started + usable - min(REFRESH_LEAD_SECONDS, usable / 4)
    return _Entry(found, "", started + usable, refresh_at, generation)


def token_expiry(secret: str) -> Optional[float]:
    """The Unix time a token says it expires: a JWT's `exp`, or the `expiration` inside an ECR
    authorization token (base64 of a JSON document); None for an opaque secret."""
    if len(secret) > MAX_TOKEN_CHARS:
        return None
    parts = secret.split(".")
    document = _base64_json(parts[1]) if len(parts) == 3 else _base64_json(secret)
    expiry = document.get("exp", document.get("expiration")) if isinstance(document, dict) else None
    is_number = isinstance(expiry, (int, float)) and not isinstance(expiry, bool)
    return float(expiry) if is_number else None


def _base64_json(text: str) -> object:
    try:
        standard = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
        raw = base64.b64decode(standard, validate=True)
        return json.loads(raw)
    except (binascii.Error, ValueError):
        return None


def key_for(helper: str, server_url: str, environment: Mapping[str, str]) -> Key:
    """A digest of the environment, not the environment: it may hold a cloud's secret keys."""
    spelled = json.dumps(sorted(environment.items())).encode("utf-8", "surrogateescape")
    return (helper, urls.canonical(server_url), hashlib.sha256(spelled).hexdigest())


_ACTIVE: Optional[TokenCache] = None


def activate(files: Optional[HelperFiles] = None) -> TokenCache:
    """Called by the agent: from now on this process keeps helpers' answers."""
    global _ACTIVE
    _ACTIVE = TokenCache(files)
    return _ACTIVE


def deactivate() -> None:
    """Served in process again (the end of `credbridge doctor`'s checks)."""
    global _ACTIVE
    _ACTIVE = None


def active() -> Optional[TokenCache]:
    return _ACTIVE
