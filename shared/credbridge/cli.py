"""The `credbridge` management command.

Today: run or stop the per-user agent. Setup, doctor, login and migration
come with their issues.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from credbridge import __version__, wire


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="credbridge", description="Docker credential helpers for every container tool.")
    parser.add_argument("--version", action="version", version=f"credbridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("agent", help="serve helper calls in the foreground (helpers start it on demand)")
    commands.add_parser("stop-agent", help="stop this user's agent (it also exits by itself when idle)")
    options = parser.parse_args(argv)
    if options.command == "agent":
        from credbridge.agent import main as serve

        serve()
        return 0
    return stop_agent()


def stop_agent() -> int:
    try:
        with open(wire.agent_lock_path(os.environ)) as lock:
            pid = int(lock.read().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid <= 0:
        print("credbridge: no agent is running")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print("credbridge: no agent is running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
