"""docker-credential-keyring: credentials in the OS keyring."""

from credbridge.serve import run_helper


def main() -> None:
    run_helper("keyring")
