"""Every store in one table: a new store is one module and one row here.

Import-free on purpose: the hot path (wire's environment filter) reads it on
every call; a store's own module is imported only when that store is opened.
"""

TYPE_CHECKING = False  # no typing, no __future__: see credbridge.wire
if TYPE_CHECKING:
    from typing import Mapping

    from credbridge.store import CredentialStore

#: Variables every store may read: the user's directories, ours, and docker's config location.
COMMON_ENV_PREFIXES = ("XDG_", "CREDBRIDGE_", "DOCKER_")

#: docker-credential-<name> -> ("module:factory" taking the caller's environment,
#: the prefixes of the variables that store reads besides the common ones).
STORES = {
    "keyring": ("credbridge.stores.keyring:open_keyring", ()),
    "cryptfile": ("credbridge.stores.cryptfile.store:CryptFileStore", ()),
    "apptainer": ("credbridge.stores.apptainer:apptainer_store", ("APPTAINER_",)),
    "singularity": ("credbridge.stores.apptainer:singularity_store", ("SINGULARITY_",)),
    "vault": ("credbridge.stores.vault.store:VaultStore", ("VAULT_", "BAO_")),
    "credbridge": ("credbridge.stores.router.store:RouterStore", ()),
}

#: The executables a user installs: one per store, and the `credbridge` command.
PROGRAMS = tuple(f"docker-credential-{name}" for name in STORES) + ("credbridge",)


def env_prefixes() -> "tuple[str, ...]":
    """The prefixes of every variable some store reads: only those reach the agent."""
    return COMMON_ENV_PREFIXES + tuple(prefix for _, prefixes in STORES.values() for prefix in prefixes)


def open_store(name: str, env: "Mapping[str, str]") -> "CredentialStore":
    from importlib import import_module

    module_name, _, factory_name = STORES[name][0].partition(":")
    return getattr(import_module(module_name), factory_name)(env)
