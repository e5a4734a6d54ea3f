"""docker-credential-vault: credentials in OpenBao / HashiCorp Vault KV v2 (teams, clusters, CI)."""

from credbridge.serve import run_helper


def main() -> None:
    run_helper("vault")  # the store's warnings (VAULT_SKIP_VERIFY, plain http) come back with each call
