"""The caller's own directories, from the caller's environment.

The agent serves many callers, each with its HOME and XDG variables, so a
store never asks its own process where home is: it asks the environment
it was opened with (XDG base directory rules, then the process's home).
"""

from __future__ import annotations

import os
from typing import Mapping


def home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def data_home(env: Mapping[str, str]) -> str:
    """$XDG_DATA_HOME, else ~/.local/share."""
    return env.get("XDG_DATA_HOME") or os.path.join(home(env), ".local", "share")


def config_home(env: Mapping[str, str]) -> str:
    """$XDG_CONFIG_HOME, else ~/.config."""
    return env.get("XDG_CONFIG_HOME") or os.path.join(home(env), ".config")


def state_home(env: Mapping[str, str]) -> str:
    """$XDG_STATE_HOME, else ~/.local/state: what must outlive a logout but is no one's data."""
    return env.get("XDG_STATE_HOME") or os.path.join(home(env), ".local", "state")
