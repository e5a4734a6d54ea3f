"""docker-credential-cryptfile: credentials in one encrypted file (headless machines)."""

from credbridge.serve import run_helper


def main() -> None:
    run_helper("cryptfile")
