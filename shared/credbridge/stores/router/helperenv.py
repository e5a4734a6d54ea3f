"""Which of the caller's variables a helper that is not ours receives.

The clouds' token-minting helpers pick the account from the caller's
environment (AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_CLIENT_ID,
...): each known helper gets its own family, any helper the proxy and CA
settings, and a route's `env` adds names; no helper gets another cloud's
keys. What a helper receives is also what keys its cached answers
(credbridge.stores.router.tokencache), so two profiles never share a token.
"""

from __future__ import annotations

from typing import Mapping

from credbridge import wire

#: docker-credential-<name> -> the prefixes of the variables it reads.
KNOWN_HELPERS: dict[str, tuple[str, ...]] = {
    "ecr-login": ("AWS_",),
    "gcr": ("GOOGLE_", "CLOUDSDK_"),
    "gcloud": ("GOOGLE_", "CLOUDSDK_"),
    "acr-env": ("AZURE_",),
}


def helper_environment(helper: str, env: Mapping[str, str], extra: tuple[str, ...] = ()) -> dict[str, str]:
    """`env` without the clouds' variables but those `helper` reads and those named in `extra`."""
    own = KNOWN_HELPERS.get(helper, ())
    return {
        name: value
        for name, value in env.items()
        if not name.startswith(wire.HELPER_ENV_PREFIXES) or name.startswith(own) or name in extra
    }
