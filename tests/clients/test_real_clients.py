"""The real clients against a real registry, with docker-credential-keyring as their store.

docker CLI, skopeo, podman and docker-py talk to a password-protected
docker-registry on 127.0.0.1 and keep their credentials in the private
gnome-keyring through our installed helper, served by the agent and in
process (`helper_env`). Nothing is imitated and nothing touches the real
user's files: every client gets its own HOME, XDG config/data/cache, docker
config, containers auth file, registries.conf, storage.conf and
containers.conf under the test's tmp_path. A missing program fails the test.

How the containers tools are pointed at the helper (docs/protocol.md section 2):
podman reads CONTAINERS_REGISTRIES_CONF; skopeo 1.9.3 ignores that variable
and needs its hidden global flag `--registries-conf FILE`. Both get an
existing REGISTRY_AUTH_FILE (`{}`): their logout refuses to run ("checking
authfile: stat ...: no such file or directory") when it names a missing file.
Rootful podman also needs its storage (CONTAINERS_STORAGE_CONF), its tmp dir,
events and network config (CONTAINERS_CONF) moved into temp dirs, or it
writes to /run/libpod, /run/containers and /etc/containers/networks.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pytest

from tests.conftest import Helper, across_installations
from tests.support.registry import Registry

pytestmark = across_installations  # the venv install and the PyInstaller bundle alike

TOOL_TIMEOUT_SECONDS = 120
NOT_FOUND = b"credentials not found in native keychain\n"
DOCKER_HUB = "https://index.docker.io/v1/"
INSTALL_HINTS = {
    "docker": "the docker CLI (apt install docker.io, or docker-ce-cli)",
    "skopeo": "apt install skopeo",
    "podman": "apt install podman",
}


# -- the registry and the clients' sandbox --------------------------------------


def program(name: str, env: dict[str, str]) -> str:
    """Absolute path of a real client on the test's PATH; missing means FAIL, never skip."""
    path = shutil.which(name, path=env["PATH"])
    if path is None:
        pytest.fail(f"required program not installed: {name} ({INSTALL_HINTS.get(name, name)})", pytrace=False)
    return path


def run_tool(
    argv: Sequence[str], env: dict[str, str], stdin: str = "", timeout: float = TOOL_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    """Run a client with exactly ``env``; secrets only ever go on stdin, never in argv."""
    try:
        return subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(argv[:3])} did not finish within {timeout}s; stdout={e.stdout!r} stderr={e.stderr!r}")


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"rc={done.returncode}\nstdout={done.stdout}\nstderr={done.stderr}"


@dataclass(frozen=True)
class Clients:
    """The real clients, each configured to use docker-credential-keyring, all under ``root``."""

    env: dict[str, str]
    root: Path
    docker_config: Path
    auth_file: Path
    registries_conf: Path

    def docker(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_tool([program("docker", self.env), *args], self.env, stdin)

    def skopeo(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_tool(
            [program("skopeo", self.env), "--registries-conf", str(self.registries_conf), *args], self.env, stdin
        )

    def podman(
        self, *args: str, stdin: str = "", registries_conf: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = self.env if registries_conf is None else {**self.env, "CONTAINERS_REGISTRIES_CONF": str(registries_conf)}
        return run_tool([program("podman", env), *args], env, stdin)

    def docker_config_json(self) -> dict:
        return json.loads((self.docker_config / "config.json").read_text())

    def registries_conf_with(self, *helpers: str) -> Path:
        path = self.root / "containers" / f"registries-{'-'.join(helpers) or 'none'}.conf"
        path.write_text(f"credential-helpers = {json.dumps(list(helpers))}\n")
        return path


def private_podman(podman: Path) -> dict[str, str]:
    """Variables that keep podman's storage, temporary files and networks under `podman` (vfs, no daemon)."""
    for directory in (podman / "tmp", podman / "networks"):
        directory.mkdir(parents=True, exist_ok=True)
    (podman / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{podman / "runroot"}"\ngraphroot = "{podman / "graphroot"}"\n'
    )
    (podman / "containers.conf").write_text(
        "[engine]\n"
        f'tmp_dir = "{podman / "tmp"}"\n'
        f'static_dir = "{podman / "static"}"\n'
        f'volume_path = "{podman / "volumes"}"\n'
        'events_logger = "none"\n'
        "[network]\n"
        # netavark as root always uses /run/containers/networks; CNI's config dir can move.
        'network_backend = "cni"\n'
        f'network_config_dir = "{podman / "networks"}"\n'
    )
    return {"CONTAINERS_STORAGE_CONF": str(podman / "storage.conf"), "CONTAINERS_CONF": str(podman / "containers.conf")}


@pytest.fixture
def clients(helper_env: dict[str, str], tmp_path: Path) -> Clients:
    """A private sandbox for every client, on top of the keyring's (and maybe the agent's) environment."""
    root = tmp_path
    home = root / "home"
    docker_config = root / "docker"
    containers = root / "containers"
    for d in (home / ".config", home / ".local" / "share", home / ".cache", docker_config, containers, root / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "keyring"}))
    auth_file = containers / "auth.json"
    auth_file.write_text("{}")
    registries_conf = containers / "registries.conf"
    registries_conf.write_text('credential-helpers = ["keyring"]\n')
    env = {
        **helper_env,  # PATH with our bindir first, DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR (agent socket)
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(root / "tmp"),
        "DOCKER_CONFIG": str(docker_config),
        "REGISTRY_AUTH_FILE": str(auth_file),
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
        **private_podman(root / "podman"),
    }
    return Clients(env, root, docker_config, auth_file, registries_conf)


# -- assertions -------------------------------------------------------------------


def secret_forms(username: str, password: str) -> list[bytes]:
    """The password as typed and every base64 spelling a client could write (`auth` values)."""
    forms = {password}
    for raw in (password, f"{username}:{password}"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(raw.encode()).decode().rstrip("="))
    return sorted(form.encode() for form in forms)


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink())


def assert_no_secret_in(roots: Iterable[Path], username: str, password: str) -> None:
    roots = list(roots)
    checked = 0
    for path in files_under(*roots):
        checked += 1
        data = path.read_bytes()
        for form in secret_forms(username, password):
            assert form not in data, f"{path} contains the secret (as {form!r})"
    assert checked, f"no file to check under {roots}"


def containers_auth_files(clients: Clients) -> list[Path]:
    """Every auth.json containers/image would read or write for this environment."""
    env = clients.env
    return [
        clients.auth_file,
        Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json",
        Path(env["XDG_CONFIG_HOME"]) / "containers" / "auth.json",
        Path(env["HOME"]) / ".docker" / "config.json",
    ]


def assert_no_auth_entry(auths: dict, host: str) -> None:
    entry = auths.get(host, {})
    assert not entry.get("auth") and not entry.get("identitytoken"), f"auth for {host} written to a file: {auths}"


def got(helper: Helper, server: str) -> dict[str, str]:
    result = helper.get(server)
    assert result.returncode == 0, f"get {server}: rc={result.returncode} {result.stdout!r} {result.stderr!r}"
    return json.loads(result.stdout)


def assert_not_found(helper: Helper, server: str) -> None:
    result = helper.get(server)
    assert (result.returncode, result.stdout) == (1, NOT_FOUND), (result.returncode, result.stdout, result.stderr)


def listed(helper: Helper) -> dict[str, str]:
    result = helper.list()
    assert result.returncode == 0, result.text
    return json.loads(result.stdout)


def docker_login(clients: Clients, registry: Registry, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return clients.docker(
        "login",
        registry.host,
        "-u",
        registry.username,
        "--password-stdin",
        stdin=(registry.password if password is None else password) + "\n",
    )


def skopeo_inspect(clients: Clients, registry: Registry) -> subprocess.CompletedProcess[str]:
    return clients.skopeo("inspect", "--tls-verify=false", f"docker://{registry.test_image}")


# -- docker CLI -------------------------------------------------------------------


def test_docker_login_keeps_the_password_in_the_keyring_and_out_of_docker_config(
    clients: Clients, registry: Registry, keyring_helper: Helper
) -> None:
    done = docker_login(clients, registry)
    assert done.returncode == 0 and "Login Succeeded" in done.stdout, explain(done)

    config = clients.docker_config_json()
    assert config.get("credsStore") == "keyring"
    assert_no_auth_entry(config.get("auths", {}), registry.host)
    assert_no_secret_in([clients.docker_config], registry.username, registry.password)
    assert got(keyring_helper, registry.host) == {
        "ServerURL": registry.host,
        "Username": registry.username,
        "Secret": registry.password,
    }
    assert listed(keyring_helper) == {registry.host: registry.username}


def test_go_secretservice_helper_reads_what_docker_login_stored(
    clients: Clients, registry: Registry, go_helper: Helper
) -> None:
    done = docker_login(clients, registry)
    assert done.returncode == 0, explain(done)
    assert got(go_helper, registry.host) == {
        "ServerURL": registry.host,
        "Username": registry.username,
        "Secret": registry.password,
    }


def test_docker_logout_erases_the_keyring_item(
    clients: Clients, registry: Registry, keyring_helper: Helper, go_helper: Helper
) -> None:
    done = docker_login(clients, registry)
    assert done.returncode == 0, explain(done)

    done = clients.docker("logout", registry.host)
    assert done.returncode == 0 and f"Removing login credentials for {registry.host}" in done.stdout, explain(done)
    assert_not_found(keyring_helper, registry.host)
    assert_not_found(go_helper, registry.host)
    assert listed(keyring_helper) == {}
    assert registry.host not in clients.docker_config_json().get("auths", {})


def test_docker_login_with_a_wrong_password_fails_and_stores_nothing(
    clients: Clients, registry: Registry, keyring_helper: Helper
) -> None:
    wrong = "not-" + registry.password
    done = docker_login(clients, registry, password=wrong)
    assert done.returncode != 0, explain(done)
    assert "401" in done.stderr or "unauthorized" in done.stderr.lower(), explain(done)

    assert listed(keyring_helper) == {}
    assert_not_found(keyring_helper, registry.host)
    assert registry.host not in clients.docker_config_json().get("auths", {})
    assert_no_secret_in([clients.docker_config], registry.username, wrong)


# -- skopeo -----------------------------------------------------------------------


def test_skopeo_login_stores_in_the_keyring_and_writes_no_auth_file_secret(
    clients: Clients, registry: Registry, keyring_helper: Helper
) -> None:
    done = clients.skopeo(
        "login",
        "--tls-verify=false",
        "-u",
        registry.username,
        "--password-stdin",
        registry.host,
        stdin=registry.password + "\n",
    )
    assert done.returncode == 0 and "Login Succeeded" in done.stdout, explain(done)

    assert got(keyring_helper, registry.host) == {
        "ServerURL": registry.host,
        "Username": registry.username,
        "Secret": registry.password,
    }
    assert json.loads(clients.auth_file.read_text()).get("auths", {}) == {}
    assert_no_secret_in(containers_auth_files(clients), registry.username, registry.password)


def test_skopeo_inspect_and_copy_get_their_credentials_from_the_helper_until_logout(
    clients: Clients, registry: Registry, keyring_helper: Helper
) -> None:
    before = skopeo_inspect(clients, registry)
    assert before.returncode != 0 and "unauthorized" in before.stderr.lower(), (
        f"the registry let skopeo in without credentials:\n{explain(before)}"
    )

    done = clients.skopeo(
        "login",
        "--tls-verify=false",
        "-u",
        registry.username,
        "--password-stdin",
        registry.host,
        stdin=registry.password + "\n",
    )
    assert done.returncode == 0, explain(done)

    inspected = skopeo_inspect(clients, registry)
    assert inspected.returncode == 0, explain(inspected)
    info = json.loads(inspected.stdout)
    assert info["Name"] == f"{registry.host}/test/hello" and info["RepoTags"] == ["latest"]

    copy_dir = clients.root / "copied"
    copied = clients.skopeo("copy", "--src-tls-verify=false", f"docker://{registry.test_image}", f"dir:{copy_dir}")
    assert copied.returncode == 0, explain(copied)
    manifest = json.loads((copy_dir / "manifest.json").read_text())
    assert len(manifest["layers"]) == 1
    assert (copy_dir / manifest["layers"][0]["digest"].split(":", 1)[1]).is_file()

    logged_out = clients.skopeo("logout", registry.host)
    assert logged_out.returncode == 0 and f"Removed login credentials for {registry.host}" in logged_out.stdout, (
        explain(logged_out)
    )
    assert_not_found(keyring_helper, registry.host)
    after = skopeo_inspect(clients, registry)
    assert after.returncode != 0 and "unauthorized" in after.stderr.lower(), explain(after)
    assert_no_secret_in(containers_auth_files(clients), registry.username, registry.password)


# -- podman -----------------------------------------------------------------------


def podman_login(clients: Clients, registry: Registry) -> subprocess.CompletedProcess[str]:
    return clients.podman(
        "login",
        "--tls-verify=false",
        "-u",
        registry.username,
        "--password-stdin",
        registry.host,
        stdin=registry.password + "\n",
    )


def test_podman_login_stores_in_the_keyring_and_get_login_prints_the_username(
    clients: Clients, registry: Registry, keyring_helper: Helper
) -> None:
    done = podman_login(clients, registry)
    assert done.returncode == 0 and "Login Succeeded" in done.stdout, explain(done)
    assert got(keyring_helper, registry.host)["Secret"] == registry.password

    who = clients.podman("login", "--get-login", registry.host)
    assert (who.returncode, who.stdout) == (0, f"{registry.username}\n"), explain(who)
    assert json.loads(clients.auth_file.read_text()).get("auths", {}) == {}
    assert_no_secret_in(containers_auth_files(clients), registry.username, registry.password)


def test_podman_logout_erases_the_keyring_item(clients: Clients, registry: Registry, keyring_helper: Helper) -> None:
    done = podman_login(clients, registry)
    assert done.returncode == 0, explain(done)

    out = clients.podman("logout", registry.host)
    assert out.returncode == 0 and f"Removed login credentials for {registry.host}" in out.stdout, explain(out)
    assert_not_found(keyring_helper, registry.host)
    who = clients.podman("login", "--get-login", registry.host)
    assert who.returncode != 0 and f"not logged into {registry.host}" in who.stderr, explain(who)


def test_podman_logout_all_lists_then_erases_every_keyring_credential(
    clients: Clients, registry: Registry, keyring_helper: Helper
) -> None:
    """`logout --all` is containers/image's one `list` caller: one erase per listed key, any spelling."""
    done = podman_login(clients, registry)
    assert done.returncode == 0, explain(done)
    for server in (DOCKER_HUB, "other.example.com:5000"):
        stored = keyring_helper.store(server, "someone", "elsewhere")
        assert stored.returncode == 0, stored.text
    assert len(listed(keyring_helper)) == 3

    out = clients.podman("logout", "--all")
    assert out.returncode == 0 and "Removed login credentials for all registries" in out.stdout, explain(out)
    assert listed(keyring_helper) == {}


def test_podman_logout_of_a_server_never_logged_into_succeeds_as_with_the_go_helper(
    clients: Clients, keyring_helper: Helper, go_helper: Helper
) -> None:
    """What podman 4.3 can make of a helper's `erase`, measured against the alternatives.

    With no helper (auth file only) podman answers `Error: not logged into
    HOST`, exit 125. No helper can reproduce that: containers/image 5.23 counts
    an erase that exits 0 as "was logged in", and the not-found answer of a
    failing erase reaches it wrapped by the client library, unrecognised, so
    logout would fail with an error instead. Hence the protocol's rule (erase
    of an unknown server exits 0, like Go's secretservice helper) and this
    observable result: logout succeeds, and nothing is created.
    """
    server = "never-logged-in.example.com:5000"
    without = clients.podman("logout", server, registries_conf=clients.registries_conf_with("containers-auth.json"))
    assert (without.returncode, without.stderr.strip()) == (125, f"Error: not logged into {server}"), explain(without)

    go = clients.podman("logout", server, registries_conf=clients.registries_conf_with("secretservice"))
    assert (go.returncode, go.stdout) == (0, f"Removed login credentials for {server}\n"), explain(go)

    ours = clients.podman("logout", server)
    assert (ours.returncode, ours.stdout, ours.stderr) == (0, go.stdout, go.stderr), explain(ours)
    assert listed(keyring_helper) == {}
    assert_not_found(go_helper, server)


# -- across tools and spellings ------------------------------------------------------


def test_docker_login_credentials_serve_skopeo_inspect_without_credentials(
    clients: Clients, registry: Registry
) -> None:
    """docker stores `HOST`, skopeo asks for `HOST`: one login serves both tools."""
    done = docker_login(clients, registry)
    assert done.returncode == 0, explain(done)
    inspected = skopeo_inspect(clients, registry)
    assert inspected.returncode == 0, explain(inspected)
    assert json.loads(inspected.stdout)["Name"] == f"{registry.host}/test/hello"


def test_docker_hub_login_spelling_answers_the_docker_io_spelling_of_containers_tools(
    clients: Clients, keyring_helper: Helper
) -> None:
    """docker CLI stores Docker Hub as `https://index.docker.io/v1/`; podman and skopeo ask for `docker.io`."""
    stored = keyring_helper.store(DOCKER_HUB, "hubuser", "hub-secret")
    assert (stored.returncode, stored.stdout, stored.stderr) == (0, b"", b"")

    answer = got(keyring_helper, "docker.io")
    assert (answer["Username"], answer["Secret"]) == ("hubuser", "hub-secret")
    for tool in (clients.podman, clients.skopeo):
        who = tool("login", "--get-login", "docker.io")
        assert (who.returncode, who.stdout) == (0, "hubuser\n"), explain(who)


# -- docker-py --------------------------------------------------------------------

DOCKER_PY_DRIVER = r"""
import json, sys
from docker.credentials import Store
from docker.credentials.errors import CredentialsNotFound, StoreError

store = Store("keyring", environment=json.loads(sys.argv[1]))
results = []
for op, *args in json.loads(sys.argv[2]):
    try:
        value = getattr(store, op)(*args)
        results.append({"value": value.decode() if isinstance(value, bytes) else value})
    except (CredentialsNotFound, StoreError) as error:
        results.append({"error": type(error).__name__, "message": str(error)})
print(json.dumps(results))
"""


def docker_py(env: dict[str, str], *operations: tuple[str, ...]) -> list[dict]:
    """Run docker.credentials.Store operations in a child Python, bounded by a timeout.

    The child's stdin is a pipe we hold open and never write: docker-py lets
    the helper inherit it, so a helper that read stdin on `list` would hang
    and time out here instead of passing.
    """
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", DOCKER_PY_DRIVER, json.dumps(env), json.dumps(operations)],
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        os.close(read_end)
        read_end = -1
        try:
            out, err = child.communicate(timeout=TOOL_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            pytest.fail(f"docker-py {operations} did not finish within {TOOL_TIMEOUT_SECONDS}s: {err.decode()}")
    finally:
        if read_end != -1:
            os.close(read_end)
        os.close(write_end)
    assert child.returncode == 0, f"docker-py driver failed: {err.decode()}"
    return json.loads(out)


def test_docker_py_store_get_list_erase_round_trip(clients: Clients, keyring_helper: Helper) -> None:
    server = "registry.example.com:5000"
    results = docker_py(
        clients.env, ("store", server, "carol", "py-secret"), ("get", server), ("list",), ("erase", server), ("list",)
    )
    assert results == [
        {"value": ""},
        {"value": {"ServerURL": server, "Username": "carol", "Secret": "py-secret"}},
        {"value": {server: "carol"}},
        {"value": None},
        {"value": {}},
    ]
    assert_not_found(keyring_helper, server)


def test_docker_py_sees_what_our_helper_stored_and_lists_without_reading_stdin(
    clients: Clients, keyring_helper: Helper
) -> None:
    stored = keyring_helper.store(DOCKER_HUB, "hubuser", "hub-secret")
    assert stored.returncode == 0, stored.text
    assert docker_py(clients.env, ("list",), ("get", DOCKER_HUB)) == [
        {"value": {DOCKER_HUB: "hubuser"}},
        {"value": {"ServerURL": DOCKER_HUB, "Username": "hubuser", "Secret": "hub-secret"}},
    ]


def test_docker_py_get_of_an_unknown_server_raises_credentials_not_found(clients: Clients) -> None:
    [result] = docker_py(clients.env, ("get", "unknown.example.com"))
    assert result["error"] == "CredentialsNotFound", result
