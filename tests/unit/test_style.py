"""ruff's lint and format, as pyproject.toml configures them, hold for the whole tree (CI runs this)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"  # from the test extras, installed by tests/run


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing(command: list[str]) -> None:
    assert RUFF.is_file(), f"{RUFF} is missing: tests/run installs it with the test extras"
    done = subprocess.run(
        [str(RUFF), *command, "--no-cache", str(REPO)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
