"""docker-credential-credbridge: one helper for every tool, routing each registry to its store."""

from credbridge.serve import run_helper


def main() -> None:
    run_helper("credbridge")
