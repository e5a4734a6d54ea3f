"""docker-credential-singularity: the credentials in Singularity's own remote.yaml and docker-config file."""

from credbridge.client import run_helper


def main() -> None:
    run_helper("singularity")
