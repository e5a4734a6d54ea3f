"""docker-credential-vault: credentials in OpenBao / HashiCorp Vault KV v2 (teams, clusters, CI)."""

import posix

from credbridge.client import run_helper


def main() -> None:
    if b"VAULT_SKIP_VERIFY" in posix.environ or b"BAO_SKIP_VERIFY" in posix.environ:
        from credbridge.stores.vaultsettings import warn_if_not_verifying

        warn_if_not_verifying(posix.environ)
    run_helper("vault")
