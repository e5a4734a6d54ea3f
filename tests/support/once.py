"""What every pytest-xdist worker of one run shares: built once, under a lock, in the run's common directory.

Each worker has its own session fixtures (keyrings, registries, agents);
only what is slow to make and never changes during a run (the PyInstaller
bundle, the Go strict loader) is made once and read by all of them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

DONE = ".built"


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The directory `name`, filled by `build(directory)` the first time any worker of this run asks for it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's directory, above each worker's own
    directory = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / DONE).exists():
            shutil.rmtree(directory, ignore_errors=True)  # a build cut short leaves no half for the next
            directory.mkdir()
            build(directory)
            (directory / DONE).touch()
    return directory
