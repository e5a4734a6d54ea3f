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
    return _xdg(env, "XDG_DATA_HOME", ".local", "share")


def config_home(env: Mapping[str, str]) -> str:
    """$XDG_CONFIG_HOME, else ~/.config."""
    return _xdg(env, "XDG_CONFIG_HOME", ".config")


def state_home(env: Mapping[str, str]) -> str:
    """$XDG_STATE_HOME, else ~/.local/state: what must outlive a logout but is no one's data."""
    return _xdg(env, "XDG_STATE_HOME", ".local", "state")


def _xdg(env: Mapping[str, str], variable: str, *default: str) -> str:
    """The variable's directory, unless it is relative (the specification: "consider the path invalid"),
    which would name one place for the caller and another for the agent, whose working directory differs."""
    value = env.get(variable, "")
    return value if os.path.isabs(value) else os.path.join(home(env), *default)
