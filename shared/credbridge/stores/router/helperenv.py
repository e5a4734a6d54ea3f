"""Which of the caller's variables a helper that is not ours receives.

The clouds' token-minting helpers pick the account from the caller's
environment (AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_CLIENT_ID,
...): each known helper gets its own family, any helper the proxy and CA
settings, and a route's `env` adds names; no helper gets another cloud's
keys. What a helper receives is also what keys its cached answers
(credbridge.stores.router.tokencache), so two profiles never share a token.
A helper that writes its tokens to a file of its own (ecr-login: ~/.ecr/cache.json,
in plaintext) is told, on the agent's calls, to keep it in a private directory
the agent removes with its tokens (credbridge.stores.router.helperfiles).
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Optional

from credbridge import wire

#: docker-credential-<name> -> the prefixes of the variables it reads.
KNOWN_HELPERS: dict[str, tuple[str, ...]] = {
    "ecr-login": ("AWS_",),
    "gcr": ("GOOGLE_", "CLOUDSDK_"),
    "gcloud": ("GOOGLE_", "CLOUDSDK_"),
    "acr-env": ("AZURE_",),
}


class OwnTokenFile(NamedTuple):
    """How a helper is told where to write the tokens it mints, and how a caller chooses that."""

    directory_variable: str
    callers_choice: tuple[str, ...]


#: docker-credential-<name> -> its token file; set on the agent's calls to the helper's directory
#: (HelperFiles.directory) unless the caller set one of `callers_choice` (ecr-login 0.6.0 reads both; docs/design.md).
OWN_TOKEN_FILES: dict[str, OwnTokenFile] = {
    "ecr-login": OwnTokenFile("AWS_ECR_CACHE_DIR", ("AWS_ECR_CACHE_DIR", "AWS_ECR_DISABLE_CACHE")),
}
#: A helper's name -> a private directory for its token file (None: none could be made).
FilesDirectory = Callable[[str], Optional[str]]


def helper_environment(
    helper: str, env: Mapping[str, str], extra: tuple[str, ...] = (), own_files: Optional[FilesDirectory] = None
) -> dict[str, str]:
    """`env` without the clouds' variables but those `helper` reads and those named in `extra`; with
    `own_files` (the agent's calls), the helper's token file in the directory it gives."""
    own = KNOWN_HELPERS.get(helper, ())
    chosen = {
        name: value
        for name, value in env.items()
        if not name.startswith(wire.HELPER_ENV_PREFIXES) or name.startswith(own) or name in extra
    }
    token_file = OWN_TOKEN_FILES.get(helper)
    if own_files is None or token_file is None or any(chosen.get(name) for name in token_file.callers_choice):
        return chosen
    directory = own_files(helper)
    return chosen if directory is None else {**chosen, token_file.directory_variable: directory}
