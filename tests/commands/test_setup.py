"""`credbridge setup [--undo]`: one login in any tool serves every tool; undo gives every file back.

The installed `credbridge` edits a temporary HOME; the real docker CLI,
skopeo, podman and docker-py then use the files it wrote against the real
registry, with the private keyring behind the helper. Round trips compare
every file under HOME (bytes and mode) before setup and after undo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from credbridge.files import registriesconf
from tests.clients.test_real_clients import (
    NOT_FOUND,
    TOOL_TIMEOUT_SECONDS,
    assert_no_secret_in,
    explain,
    private_podman,
    program,
    run_tool,
)
from tests.conftest import Helper, Installation, keyring_env
from tests.support.process import Result, run
from tests.support.registry import Registry
from tests.support.strictload import StrictLoader

#: The helper every tool is pointed at: the one line to change when the router is the default.
HELPER = "credbridge"  # the router: setup's default
CONTAINERS_HELPERS = [HELPER, "containers-auth.json"]
USER_REGISTRIES_CONF = Path(".config/containers/registries.conf")
#: A user registries.conf with everything a person may have in one (v2 format).
USER_REGISTRIES_CONF_TEXT = """\
# My registries: hand-written, comments and layout must survive.
unqualified-search-registries = ["docker.io", "quay.io"]  # searched in order

credential-helpers = [
    "secretservice",   # the Go helper I used before
]

[[registry]]
prefix = "mirror.example.com/library"
location = "docker.io/library"
blocked = false

[aliases]
"hello" = "docker.io/library/hello-world"
"""

Snapshot = dict[str, tuple[bytes | None, int]]


def snapshot(root: Path) -> Snapshot:
    """Every path under root: file bytes (None for a directory) and mode."""
    return {
        str(path.relative_to(root)): (None if path.is_dir() else path.read_bytes(), path.stat().st_mode)
        for path in sorted(root.rglob("*"))
    }


def stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_ino, path.stat().st_mtime_ns) for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def home_env(installation: Installation, tmp_path: Path) -> dict[str, str]:
    """A bare HOME: nothing configured; our helpers first on PATH, no variable that moves a config file."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return {"HOME": str(home), "PATH": f"{installation.bindir}:{os.environ['PATH']}", "LANG": "C.UTF-8"}


def credbridge(installation: Installation, env: dict[str, str], *args: str) -> Result:
    return run([installation.executable("credbridge"), *args], "", env)


def setup_ok(installation: Installation, env: dict[str, str], *args: str) -> str:
    done = credbridge(installation, env, "setup", *args)
    assert done.returncode == 0 and not done.stderr, done.stderr.decode()
    return done.stdout.decode()


def home_of(env: dict[str, str]) -> Path:
    return Path(env["HOME"])


# -- what setup writes ---------------------------------------------------------------------------


def test_setup_points_docker_at_the_helper_keeping_every_other_key_and_login(
    installation: Installation, home_env: dict[str, str]
) -> None:
    config = home_of(home_env) / ".docker" / "config.json"
    config.parent.mkdir()
    original = {
        "auths": {"old.example.com": {"auth": "dXNlcjpzZWNyZXQ="}},
        "credsStore": "secretservice",
        "HttpHeaders": {"X-Team": "hpc"},
        "x-unknown": [1, {"kept": True}],
    }
    config.write_text(json.dumps(original))
    out = setup_ok(installation, home_env, "--helper", HELPER, "--tool", "docker")
    [said, hint] = out.splitlines()  # the hint: this HOME has no desktop keyring and no cryptfile yet
    assert said == f'docker: set credsStore = "{HELPER}" in {config} (credbridge setup --undo reverts)'
    assert hint.endswith("does not exist yet: run `credbridge unlock --new`")
    assert json.loads(config.read_text()) == {**original, "credsStore": HELPER}
    assert list(json.loads(config.read_text())) == list(original), "keys keep their order"


def test_setup_changes_only_the_credential_helpers_lines_of_a_user_registries_conf(
    installation: Installation, home_env: dict[str, str]
) -> None:
    path = home_of(home_env) / USER_REGISTRIES_CONF
    path.parent.mkdir(parents=True)
    path.write_text(USER_REGISTRIES_CONF_TEXT)
    setup_ok(installation, home_env, "--helper", HELPER, "--tool", "podman", "--tool", "skopeo")
    old_lines = 'credential-helpers = [\n    "secretservice",   # the Go helper I used before\n]\n'
    assert path.read_text() == USER_REGISTRIES_CONF_TEXT.replace(
        old_lines, f'credential-helpers = ["{HELPER}", "containers-auth.json"]\n'
    )


def test_without_a_user_registries_conf_a_user_drop_in_keeps_the_system_drop_ins_in_force(
    installation: Installation, home_env: dict[str, str]
) -> None:
    """A user registries.conf would switch /etc/containers/registries.conf.d off (Debian ships shortnames.conf
    there)."""
    assert list(Path(registriesconf.SYSTEM_DROPIN_DIR).glob("*.conf")), "this test needs a system drop-in"
    out = setup_ok(installation, home_env, "--helper", HELPER, "--tool", "buildah")
    dropin = home_of(home_env) / ".config/containers/registries.conf.d" / registriesconf.OWN_DROPIN
    assert out.splitlines()[0] == (
        f'buildah: created with credential-helpers = ["{HELPER}", "containers-auth.json"] '
        f"in {dropin} (credbridge setup --undo reverts)"
    )
    assert dropin.read_text() == f'credential-helpers = ["{HELPER}", "containers-auth.json"]\n'
    assert not (home_of(home_env) / USER_REGISTRIES_CONF).exists()


def test_without_system_drop_ins_the_user_file_starts_as_a_copy_of_the_system_file(tmp_path: Path) -> None:
    system_file, system_dir = tmp_path / "etc" / "registries.conf", tmp_path / "etc" / "registries.conf.d"
    system_file.parent.mkdir()
    system_file.write_text(USER_REGISTRIES_CONF_TEXT)
    env = {"HOME": str(tmp_path / "home")}
    chosen = registriesconf.target(env, str(system_file), str(system_dir))
    assert chosen == registriesconf.Target(
        str(tmp_path / "home" / USER_REGISTRIES_CONF), system_file.read_bytes(), True
    )
    system_dir.mkdir()
    (system_dir / "shortnames.conf").write_text('[aliases]\n"x" = "docker.io/library/x"\n')
    dropin = tmp_path / "home/.config/containers/registries.conf.d" / registriesconf.OWN_DROPIN
    assert registriesconf.target(env, str(system_file), str(system_dir)) == registriesconf.Target(
        str(dropin), b"", False
    )


def test_a_user_drop_in_that_already_sets_credential_helpers_is_edited_in_its_place(
    installation: Installation, home_env: dict[str, str]
) -> None:
    """Drop-ins have the last word over the main file: editing the main file would change nothing."""
    main = home_of(home_env) / USER_REGISTRIES_CONF
    main.parent.mkdir(parents=True)
    main.write_text(USER_REGISTRIES_CONF_TEXT)
    later = main.parent / "registries.conf.d" / "50-mine.conf"
    later.parent.mkdir()
    later.write_text('# mine\ncredential-helpers = ["pass"]\n')
    setup_ok(installation, home_env, "--helper", HELPER, "--tool", "podman")
    assert main.read_text() == USER_REGISTRIES_CONF_TEXT
    assert later.read_text() == f'# mine\ncredential-helpers = ["{HELPER}", "containers-auth.json"]\n'


def test_apptainer_and_singularity_files_get_creds_store_and_still_load_in_their_strict_decoder(
    installation: Installation, home_env: dict[str, str], strict_loader: StrictLoader, tmp_path: Path
) -> None:
    env = {**home_env, "APPTAINER_CONFIGDIR": str(tmp_path / "apptainer-config")}
    apptainer = tmp_path / "apptainer-config" / "docker-config.json"
    singularity = home_of(env) / ".singularity" / "docker-config.json"
    for path in (apptainer, singularity):
        path.parent.mkdir(mode=0o700)
        path.write_text(json.dumps({"auths": {"r.example.org": {}}, "x-unknown": True}))
    out = setup_ok(installation, env, "--helper", HELPER, "--tool", "apptainer", "--tool", "singularity")
    assert f'apptainer: set credsStore = "{HELPER}" in {apptainer}' in out
    assert f'singularity: set credsStore = "{HELPER}" in {singularity}' in out
    for path in (apptainer, singularity):
        assert json.loads(path.read_text()) == {"auths": {"r.example.org": {}}, "x-unknown": True, "credsStore": HELPER}
        strict_loader.docker_config(path)


def test_apptainer_without_its_own_file_is_pointed_through_dockers_config_which_it_reads_instead(
    installation: Installation, home_env: dict[str, str]
) -> None:
    out = setup_ok(installation, home_env, "--helper", HELPER, "--tool", "docker", "--tool", "apptainer")
    config = home_of(home_env) / ".docker" / "config.json"
    assert out.startswith(f'docker, apptainer: created with credsStore = "{HELPER}" in {config}')
    assert not (home_of(home_env) / ".apptainer").exists()


# -- refusals: one line, nothing written -------------------------------------------------------------


def test_a_v1_registries_conf_is_refused_and_left_alone(installation: Installation, home_env: dict[str, str]) -> None:
    path = home_of(home_env) / USER_REGISTRIES_CONF
    path.parent.mkdir(parents=True)
    path.write_text('[registries.search]\nregistries = ["docker.io"]\n')
    before = snapshot(home_of(home_env))
    done = credbridge(installation, home_env, "setup", "--helper", HELPER, "--tool", "podman")
    assert done.returncode == 1 and b"v1 format" in done.stderr and done.stderr.count(b"\n") == 1, done.stderr
    assert snapshot(home_of(home_env)) == before


def test_a_helper_missing_from_path_is_refused_before_any_file_changes(
    installation: Installation, home_env: dict[str, str]
) -> None:
    done = credbridge(installation, home_env, "setup", "--helper", "no-such-helper")
    assert done.returncode == 1 and done.stderr == (
        b"credbridge: docker-credential-no-such-helper is not on PATH: install it, or choose another with --helper\n"
    )
    assert snapshot(home_of(home_env)) == {}


# -- idempotence, dry run, undo --------------------------------------------------------------------

PLAINTEXT_LOGIN = "dXNlcjpzZWNyZXQ="  # base64 of user:secret


def populated_home(env: dict[str, str], logins: bool = False) -> None:
    """A docker config with unknown keys (0644), with or without a plaintext login, and a hand-written
    user registries.conf."""
    home = home_of(env)
    config = home / ".docker" / "config.json"
    config.parent.mkdir(mode=0o700)
    auths = f'{{"old.example.com":{{"auth":"{PLAINTEXT_LOGIN}"}}}}' if logins else '{"old.example.com":{}}'
    config.write_text(f'{{"auths":{auths},  "x-unknown": [1,2]}}\n')
    config.chmod(0o644)
    registries = home / USER_REGISTRIES_CONF
    registries.parent.mkdir(parents=True)
    registries.write_text(USER_REGISTRIES_CONF_TEXT)
    registries.chmod(0o644)


@pytest.mark.parametrize("start", ["empty home", "populated home"])
def test_a_second_setup_writes_nothing(installation: Installation, home_env: dict[str, str], start: str) -> None:
    if start == "populated home":
        populated_home(home_env)
    setup_ok(installation, home_env, "--helper", HELPER, "--tool", "docker", "--tool", "podman")
    before, contents = stamps(home_of(home_env)), snapshot(home_of(home_env))
    again = setup_ok(installation, home_env, "--helper", HELPER, "--tool", "docker", "--tool", "podman")
    assert again.count(": unchanged\n") == 2, again
    assert stamps(home_of(home_env)) == before and snapshot(home_of(home_env)) == contents


@pytest.mark.parametrize("start", ["empty home", "populated home"])
def test_dry_run_says_what_would_change_and_writes_nothing(
    installation: Installation, home_env: dict[str, str], start: str
) -> None:
    if start == "populated home":
        populated_home(home_env)
    before = snapshot(home_of(home_env))
    out = setup_ok(installation, home_env, "--helper", HELPER, "--tool", "docker", "--tool", "podman", "--dry-run")
    assert out.count("would set ") == 2, out
    assert snapshot(home_of(home_env)) == before


@pytest.mark.parametrize("start", ["empty home", "populated home"])
def test_undo_gives_back_every_file_byte_for_byte_and_removes_what_setup_created(
    installation: Installation, home_env: dict[str, str], strict_loader: StrictLoader, start: str
) -> None:
    if start == "populated home":
        populated_home(home_env)
        for name in ("apptainer", "singularity"):
            own = home_of(home_env) / f".{name}" / "docker-config.json"
            own.parent.mkdir(mode=0o700)
            own.write_text('{"auths": {"r.example.org": {}}}')
    before = snapshot(home_of(home_env))
    tools = ["--tool", "docker", "--tool", "podman", "--tool", "apptainer", "--tool", "singularity"]
    setup_ok(installation, home_env, "--helper", HELPER, *tools)
    setup_ok(installation, home_env, "--helper", "cryptfile", *tools)  # a second helper: the first original stays
    assert snapshot(home_of(home_env)) != before
    undone = setup_ok(installation, home_env, "--undo")
    assert "restored as it was before setup" in undone or "removed (setup created it)" in undone
    assert snapshot(home_of(home_env)) == before
    assert setup_ok(installation, home_env, "--undo") == "credbridge: setup has changed nothing here: nothing to undo\n"


def test_a_file_holding_plaintext_logins_is_never_copied_and_undo_resets_only_its_key(
    installation: Installation, home_env: dict[str, str]
) -> None:
    """A copy would outlive `credbridge migrate`: the secret would stay on disk in credbridge's own files."""
    populated_home(home_env, logins=True)
    config = home_of(home_env) / ".docker" / "config.json"
    original = json.loads(config.read_text())
    setup_ok(installation, home_env, "--helper", HELPER, "--tool", "docker")
    copies = [
        path
        for path in home_of(home_env).rglob("*")
        if path.is_file() and path != config and PLAINTEXT_LOGIN.encode() in path.read_bytes()
    ]
    assert copies == []
    undone = setup_ok(installation, home_env, "--undo")
    assert f"{config}: held plaintext logins, which setup does not copy, so only credsStore went back" in undone
    assert json.loads(config.read_text()) == original and config.stat().st_mode & 0o777 == 0o644


def test_undo_after_docker_changed_the_file_puts_back_only_creds_store(
    installation: Installation, home_env: dict[str, str]
) -> None:
    populated_home(home_env)
    config = home_of(home_env) / ".docker" / "config.json"
    setup_ok(installation, home_env, "--helper", HELPER, "--tool", "docker")
    changed = {
        **json.loads(config.read_text()),
        "auths": {"old.example.com": {"auth": "dXNlcjpzZWNyZXQ="}, "new.example.com": {}},
    }
    config.write_text(json.dumps(changed))
    undone = setup_ok(installation, home_env, "--undo")
    assert undone == f"{config}: changed since setup, so only credsStore went back to (unset)\n"
    assert json.loads(config.read_text()) == {key: value for key, value in changed.items() if key != "credsStore"}
    assert config.stat().st_mode & 0o777 == 0o644


# -- one login, every tool ---------------------------------------------------------------------------


@pytest.fixture
def tools_home(request: pytest.FixtureRequest, tmp_path: Path, registry: Registry) -> dict[str, str]:
    """A HOME where every tool finds its config at the default place (no DOCKER_CONFIG, no
    CONTAINERS_REGISTRIES_CONF), on the private keyring; podman's storage kept under tmp_path.
    The user's registries.conf marks the plain-HTTP test registry insecure: when skopeo and podman
    reach it without --tls-verify=false, they read the rest of the file that setup edited."""
    env = keyring_env(request, "agent")
    home = tmp_path / "home"
    for directory in (home, tmp_path / "tmp"):
        directory.mkdir(parents=True, mode=0o700)
    registries = home / USER_REGISTRIES_CONF
    registries.parent.mkdir(parents=True)
    registries.write_text(
        USER_REGISTRIES_CONF_TEXT + f'\n[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
    )
    auth_file = tmp_path / "auth.json"
    auth_file.write_text("{}")  # skopeo/podman logout refuse a REGISTRY_AUTH_FILE that does not exist
    return {
        **env,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(tmp_path / "tmp"),
        "REGISTRY_AUTH_FILE": str(auth_file),
        **private_podman(tmp_path / "podman"),
    }


def tool(env: dict[str, str], name: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_tool([program(name, env), *args], env, stdin)


DOCKER_PY_RESOLVE = """
import json, sys
import docker.auth
print(json.dumps(docker.auth.resolve_authconfig(docker.auth.load_config(), sys.argv[1])))
"""


def docker_py_credential(env: dict[str, str], host: str) -> dict | None:
    done = subprocess.run(
        [sys.executable, "-c", DOCKER_PY_RESOLVE, host],
        env=env,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_docker_cli_finds(env: dict[str, str], registry: Registry, username: str | None) -> None:
    """`docker login HOST` without a password first reads the stored login through the configured helper
    (and says so) before asking the daemon, which this machine does not run."""
    docker = tool(env, "docker", "login", registry.host)
    found = "Authenticating with existing credentials" in docker.stderr
    assert found == (username is not None) and (username is None or f"[Username: {username}]" in docker.stderr), (
        explain(docker)
    )


def assert_every_tool_uses_the_login(env: dict[str, str], registry: Registry, tmp_path: Path) -> None:
    inspected = tool(env, "skopeo", "inspect", f"docker://{registry.test_image}")
    assert inspected.returncode == 0, explain(inspected)
    assert json.loads(inspected.stdout)["Name"] == f"{registry.host}/test/hello"
    copied = tool(env, "skopeo", "copy", f"docker://{registry.test_image}", f"dir:{tmp_path / 'copied'}")
    assert copied.returncode == 0, explain(copied)
    assert json.loads((tmp_path / "copied" / "manifest.json").read_text())["layers"]
    who = tool(env, "podman", "login", "--get-login", registry.host)
    assert (who.returncode, who.stdout) == (0, f"{registry.username}\n"), explain(who)
    resolved = docker_py_credential(env, registry.host)
    assert resolved is not None and (resolved["Username"], resolved["Password"]) == (
        registry.username,
        registry.password,
    )
    listed = tool(env, "credbridge", "list", "--json")
    assert [(row["registry"], row["username"]) for row in json.loads(listed.stdout)] == [
        (registry.host, registry.username)
    ]
    assert_no_secret_in([home_of(env), Path(env["REGISTRY_AUTH_FILE"])], registry.username, registry.password)


def assert_gone_after_skopeo_logout(env: dict[str, str], registry: Registry, installation: Installation) -> None:
    out = tool(env, "skopeo", "logout", registry.host)
    assert out.returncode == 0, explain(out)
    helper = Helper(installation.executable(f"docker-credential-{HELPER}"), env)
    assert (helper.get(registry.host).returncode, helper.get(registry.host).stdout) == (1, NOT_FOUND)
    assert "Password" not in (docker_py_credential(env, registry.host) or {})
    assert_docker_cli_finds(env, registry, None)
    after = tool(env, "skopeo", "inspect", f"docker://{registry.test_image}")
    assert after.returncode != 0 and "unauthorized" in after.stderr.lower(), explain(after)


def test_after_setup_one_docker_login_serves_skopeo_podman_and_docker_py_until_skopeo_logout(
    installation: Installation, tools_home: dict[str, str], registry: Registry, tmp_path: Path
) -> None:
    out = setup_ok(installation, tools_home, "--helper", HELPER)  # every tool found on PATH
    assert out.startswith("docker: ") and "podman, skopeo, buildah: " in out, out
    login = tool(
        tools_home,
        "docker",
        "login",
        registry.host,
        "-u",
        registry.username,
        "--password-stdin",
        stdin=registry.password + "\n",
    )
    assert login.returncode == 0 and "Login Succeeded" in login.stdout, explain(login)
    assert_every_tool_uses_the_login(tools_home, registry, tmp_path)
    assert_gone_after_skopeo_logout(tools_home, registry, installation)


def test_after_setup_one_podman_login_serves_docker_skopeo_and_docker_py_until_skopeo_logout(
    installation: Installation, tools_home: dict[str, str], registry: Registry, tmp_path: Path
) -> None:
    setup_ok(installation, tools_home, "--helper", HELPER)
    login = tool(
        tools_home,
        "podman",
        "login",
        "-u",
        registry.username,
        "--password-stdin",
        registry.host,
        stdin=registry.password + "\n",
    )
    assert login.returncode == 0 and "Login Succeeded" in login.stdout, explain(login)
    assert_docker_cli_finds(tools_home, registry, registry.username)
    assert_every_tool_uses_the_login(tools_home, registry, tmp_path)
    assert_gone_after_skopeo_logout(tools_home, registry, installation)
