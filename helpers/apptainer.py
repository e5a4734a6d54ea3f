"""docker-credential-apptainer: the credentials in Apptainer's own remote.yaml and docker-config file."""

from credbridge.serve import run_helper


def main() -> None:
    run_helper("apptainer")
