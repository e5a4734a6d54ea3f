"""docker-credential-singularity: the credentials in Singularity's own remote.yaml and docker-config file."""

from credbridge.serve import run_helper


def main() -> None:
    run_helper("singularity")
