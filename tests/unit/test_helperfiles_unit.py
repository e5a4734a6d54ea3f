"""The agent's directory for the token files of the helpers it calls (ecr-login's cache.json).

Made 0700 by the agent inside its private directory; a link or a directory not ours alone in its
place is neither used nor followed; removed whole; swept by the pid in its name once that process
is gone; and named to the helper only where the caller did not choose a place themselves.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from credbridge.files import execdirs
from credbridge.stores.router.helperenv import helper_environment
from credbridge.stores.router.helperfiles import HelperFiles


@pytest.fixture
def base(tmp_path: Path) -> Path:
    place = tmp_path / "credbridge"
    place.mkdir(mode=0o700)
    return place


def test_each_helper_gets_a_0700_directory_of_this_process_and_keeps_it(base: Path) -> None:
    files = HelperFiles(str(base))
    made = Path(str(files.directory("ecr-login")))
    assert made.name == "ecr-login" and made.parent.parent == base
    assert made.parent.name.startswith(f"helper-files-{os.getpid()}-")
    assert [stat.S_IMODE(path.lstat().st_mode) for path in (made, made.parent)] == [0o700, 0o700]
    assert files.directory("ecr-login") == str(made)
    assert files.directory("gcr") == str(made.parent / "gcr")


def test_a_link_in_its_place_is_neither_used_nor_followed(base: Path, tmp_path: Path) -> None:
    files = HelperFiles(str(base))
    made = Path(str(files.directory("ecr-login")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    made.parent.rename(tmp_path / "moved")
    made.parent.symlink_to(elsewhere)
    again = Path(str(files.directory("ecr-login")))
    assert again.parent != made.parent and not again.parent.is_symlink()
    assert list(elsewhere.iterdir()) == []
    files.remove()
    assert made.parent.is_symlink() and elsewhere.is_dir() and not again.parent.exists()


def test_a_directory_others_may_read_is_not_used(base: Path) -> None:
    files = HelperFiles(str(base))
    made = Path(str(files.directory("ecr-login")))
    made.parent.chmod(0o755)
    again = Path(str(files.directory("ecr-login")))
    assert again.parent != made.parent
    assert stat.S_IMODE(again.parent.stat().st_mode) == 0o700


def test_remove_takes_every_helpers_directory_and_the_next_call_makes_it_again(base: Path) -> None:
    files = HelperFiles(str(base))
    made = Path(str(files.directory("ecr-login")))
    (made / "cache.json").write_text("token")
    files.remove()
    assert list(base.iterdir()) == []
    assert files.directory("ecr-login") == str(made) and list(made.iterdir()) == []


def test_the_sweep_removes_the_directory_of_a_process_that_is_gone(base: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = base / f"helper-files-{gone.pid}-0123abcd"
    stale.mkdir(mode=0o700)
    ours = Path(str(HelperFiles(str(base)).directory("ecr-login"))).parent
    execdirs.remove_stale(str(base))
    assert list(base.iterdir()) == [ours]


CALLER = {"HOME": "/home/u", "AWS_PROFILE": "dev", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}


def test_ecr_login_is_told_the_directory_unless_the_caller_chose(base: Path) -> None:
    files = HelperFiles(str(base))
    told = helper_environment("ecr-login", CALLER, own_files=files.directory)
    assert told == {"HOME": "/home/u", "AWS_PROFILE": "dev", "AWS_ECR_CACHE_DIR": files.directory("ecr-login")}
    for choice in ({"AWS_ECR_CACHE_DIR": "/mine"}, {"AWS_ECR_DISABLE_CACHE": "1"}):
        assert helper_environment("ecr-login", {**CALLER, **choice}, own_files=files.directory) == {
            "HOME": "/home/u",
            "AWS_PROFILE": "dev",
            **choice,
        }
    assert helper_environment("ecr-login", CALLER) == {"HOME": "/home/u", "AWS_PROFILE": "dev"}


def test_a_helper_without_a_token_file_of_its_own_gets_no_directory(base: Path) -> None:
    files = HelperFiles(str(base))
    told = helper_environment("gcr", CALLER, own_files=files.directory)
    assert told == {"HOME": "/home/u", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}
    assert list(base.iterdir()) == []
