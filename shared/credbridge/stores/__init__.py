"""Credential stores, one module each, all behind credbridge.store.CredentialStore.

Looked up by name so that a helper imports only the store it uses.
"""

from __future__ import annotations

from importlib import import_module
from typing import Mapping

from credbridge.store import CredentialStore

#: helper name -> "module:factory"; factories take the caller's environment.
STORE_FACTORIES = {
    "keyring": "credbridge.stores.oskeyring:open_keyring",
    "cryptfile": "credbridge.stores.cryptfile:CryptFileStore",
    "apptainer": "credbridge.stores.apptainer:ApptainerStore",
    "singularity": "credbridge.stores.apptainer:SingularityStore",
    "vault": "credbridge.stores.vault:VaultStore",
    "credbridge": "credbridge.stores.router:RouterStore",
}


def open_store(name: str, env: Mapping[str, str]) -> CredentialStore:
    module_name, _, factory_name = STORE_FACTORIES[name].partition(":")
    return getattr(import_module(module_name), factory_name)(env)
