"""The PyInstaller onedir bundle, built with build/build.sh exactly as a release is."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_SECONDS = 900


def build(scratch: Path, env: dict[str, str]) -> Path:
    """Build into `scratch` (its own build environment too) and return the bundle directory.

    env: HOME, PATH and pip's settings; the build fetches its pinned
    PyInstaller as a user's build would.
    """
    done = subprocess.run(
        [str(REPO / "build" / "build.sh"), str(scratch / "dist")],
        env={**env, "WORK": str(scratch / "work")},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"build/build.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return output(scratch)


def output(scratch: Path) -> Path:
    """The bundle directory that `build(scratch, ...)` makes."""
    return scratch / "dist" / "credbridge"
