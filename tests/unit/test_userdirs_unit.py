"""The caller's directories: XDG's rules, including the one that a relative path is ignored."""

from __future__ import annotations

import pytest

from credbridge.files import userdirs

HOME = {"HOME": "/home/alice"}


@pytest.mark.parametrize(
    "variable, function, default",
    [
        ("XDG_CONFIG_HOME", userdirs.config_home, "/home/alice/.config"),
        ("XDG_DATA_HOME", userdirs.data_home, "/home/alice/.local/share"),
        ("XDG_STATE_HOME", userdirs.state_home, "/home/alice/.local/state"),
    ],
)
def test_a_relative_xdg_directory_is_ignored_as_the_specification_says(variable, function, default) -> None:
    """The agent serves callers from its own working directory: a relative path would name another place
    for it than for the caller (the base directory specification: "consider the path invalid")."""
    assert function({**HOME, variable: "/srv/alice/dir"}) == "/srv/alice/dir"
    assert function({**HOME, variable: "relative/dir"}) == default
    assert function({**HOME, variable: ""}) == default
    assert function(HOME) == default
