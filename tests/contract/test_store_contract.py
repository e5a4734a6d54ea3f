"""The store contract: what every docker-credential-* store must do, written once.

Each store joins by adding its name and the builder of its environment to
STORES (another Secret Service provider: OTHER_PROVIDERS); every test then
runs against its installed executable, through the agent and in process. A key `executable:variant` runs that executable in
another configuration.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import (SERVING, Helper, Installation, across_installations, apptainer_files_env, cryptfile_env,
                            keepassxc_env, keyring_env, python_keyring_env, router_env, vault_env)

pytestmark = across_installations  # the venv install and the PyInstaller bundle alike

NOT_FOUND = b"credentials not found in native keychain\n"
#: Every store; the adversarial matrix (tests/support/matrix.py) runs over these too.
STORES = {"keyring": keyring_env, "cryptfile": cryptfile_env,
          "apptainer": apptainer_files_env("apptainer"), "singularity": apptainer_files_env("singularity"),
          "keyring:python-keyring": python_keyring_env(chunk_bytes=1024), "vault": vault_env,
          "credbridge": router_env(routed=False), "credbridge:routed": router_env(routed=True)}
#: docker-credential-keyring on other Secret Service providers: what differs is how the provider answers
#: (prompts, signals, search), which the contract proves; the matrix's attacks on the helper would only repeat.
OTHER_PROVIDERS = {"keyring:keepassxc": keepassxc_env}
CONTRACT = {**STORES, **OTHER_PROVIDERS}


@pytest.fixture(params=[(store, serving) for store in CONTRACT for serving in SERVING],
                ids=lambda param: "-".join(param))
def helper(request: pytest.FixtureRequest, installation: Installation) -> Helper:
    store, serving = request.param
    return Helper(installation.executable(f"docker-credential-{store.partition(':')[0]}"), CONTRACT[store](request, serving))


def stored(helper: Helper, server: str, username: str, secret: str) -> None:
    result = helper.store(server, username, secret)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def got(helper: Helper, server: str) -> dict[str, str]:
    result = helper.get(server)
    assert result.returncode == 0, result.text
    assert result.stderr == b""
    return json.loads(result.stdout)


def test_round_trip_returns_what_was_stored(helper: Helper) -> None:
    stored(helper, "registry.example.com", "alice", "s3cret")
    assert got(helper, "registry.example.com") == {
        "ServerURL": "registry.example.com", "Username": "alice", "Secret": "s3cret"}


def test_store_overwrites_the_secret(helper: Helper) -> None:
    stored(helper, "registry.example.com", "alice", "old")
    stored(helper, "registry.example.com", "alice", "new")
    assert got(helper, "registry.example.com")["Secret"] == "new"
    assert helper.list().stdout == b'{"registry.example.com":"alice"}\n'


def test_second_username_on_one_server_replaces_the_first(helper: Helper) -> None:
    """The latest login wins, as a user switching accounts expects (Go keeps both and picks either)."""
    stored(helper, "registry.example.com", "alice", "a")
    stored(helper, "registry.example.com", "bob", "b")
    assert got(helper, "registry.example.com")["Username"] == "bob"
    assert json.loads(helper.list().stdout) == {"registry.example.com": "bob"}


def test_erase_removes_the_credential(helper: Helper) -> None:
    stored(helper, "registry.example.com", "alice", "s3cret")
    erased = helper.erase("registry.example.com")
    assert (erased.returncode, erased.stdout) == (0, b"")
    assert helper.get("registry.example.com").stdout == NOT_FOUND


def test_erase_of_an_absent_server_succeeds_silently(helper: Helper) -> None:
    """containers/image cannot recognise a not-found answer to erase: logout would fail."""
    result = helper.erase("never-stored.example")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_get_of_an_unknown_server_is_the_exact_not_found_line(helper: Helper) -> None:
    result = helper.get("unknown.example")
    assert (result.returncode, result.stdout, result.stderr) == (1, NOT_FOUND, b"")


def test_list_of_an_empty_store_is_an_empty_object(helper: Helper) -> None:
    assert helper.list().stdout == b"{}\n"


def test_list_maps_every_server_to_its_username(helper: Helper) -> None:
    stored(helper, "one.example", "alice", "1")
    stored(helper, "two.example:5000", "bob", "2")
    stored(helper, "https://index.docker.io/v1/", "carol", "3")
    result = helper.list()
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "one.example": "alice", "two.example:5000": "bob", "https://index.docker.io/v1/": "carol"}


def test_list_does_not_read_stdin(helper: Helper) -> None:
    """docker-py leaves the parent's stdin attached: a read would block forever."""
    import subprocess

    with subprocess.Popen([helper.path, "list"], env=helper.env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        stdout, stderr = process.stdout.read(), process.stderr.read()
        assert process.wait(timeout=20) == 0
    assert (stdout, stderr) == (b"{}\n", b"")


@pytest.mark.parametrize("username, secret", [
    ("ünïcødé-üser", "pässwörd-密码-🔑"),
    ("<token>", "eyJhbGciOiJSUzI1NiJ9.identity-token"),
    ("alice", ""),
    ("alice", "with \"quotes\" \\ backslash & <html> \u2028 \t tab"),
], ids=["unicode", "identity-token", "empty-secret", "json-special-characters"])
def test_values_survive_verbatim(helper: Helper, username: str, secret: str) -> None:
    stored(helper, "registry.example.com", username, secret)
    assert got(helper, "registry.example.com") == {
        "ServerURL": "registry.example.com", "Username": username, "Secret": secret}


@pytest.mark.parametrize("stored_as, asked_as", [
    ("https://index.docker.io/v1/", "docker.io"),
    ("docker.io", "https://index.docker.io/v1/"),
    ("https://index.docker.io/v1/", "registry-1.docker.io"),
    ("registry.example.com", "https://registry.example.com"),
    ("https://registry.example.com/", "registry.example.com"),
    ("Registry.Example.COM:5000", "registry.example.com:5000"),
], ids=["docker-login-then-podman", "podman-then-docker", "hub-api-host", "scheme-added", "scheme-and-slash", "case"])
def test_one_registry_is_found_under_its_other_spellings(helper: Helper, stored_as: str, asked_as: str) -> None:
    stored(helper, stored_as, "alice", "s3cret")
    answer = got(helper, asked_as)
    assert (answer["ServerURL"], answer["Secret"]) == (asked_as, "s3cret")


def test_exact_key_wins_over_another_spelling(helper: Helper) -> None:
    stored(helper, "https://index.docker.io/v1/", "docker-user", "from-docker")
    stored(helper, "docker.io", "podman-user", "from-podman")
    assert got(helper, "docker.io")["Secret"] == "from-podman"
    assert got(helper, "https://index.docker.io/v1/")["Secret"] == "from-docker"


@pytest.mark.parametrize("asked_as", [
    "registry.example.com.evil.net",
    "evilregistry.example.com",
    "registry.example.co",
    "registry.example.com:5001",
    "registry.example.com/other/path",
    "user@registry.example.com",
    "evil.net/registry.example.com",
    "https://index.docker.io/v1/access-token",
], ids=["lookalike-suffix", "lookalike-prefix", "truncated", "other-port", "other-path", "userinfo", "host-in-path", "hub-token-key"])
def test_a_different_registry_never_gets_the_credential(helper: Helper, asked_as: str) -> None:
    stored(helper, "registry.example.com", "alice", "s3cret")
    stored(helper, "https://index.docker.io/v1/", "hub", "hub-secret")
    result = helper.get(asked_as)
    assert (result.returncode, result.stdout) == (1, NOT_FOUND)


def test_erase_removes_every_spelling_of_the_registry_and_nothing_else(helper: Helper) -> None:
    stored(helper, "https://index.docker.io/v1/", "alice", "1")
    stored(helper, "docker.io", "alice", "2")
    stored(helper, "https://index.docker.io/v1/access-token", "alice", "3")
    stored(helper, "docker.io.evil.net", "mallory", "4")
    assert helper.erase("docker.io").returncode == 0
    assert json.loads(helper.list().stdout) == {
        "https://index.docker.io/v1/access-token": "alice", "docker.io.evil.net": "mallory"}


def test_thirty_two_processes_storing_at_once_lose_nothing(helper: Helper) -> None:
    """Parallel batch jobs log in at the same moment; every acknowledged store is there afterwards, round after round."""
    import subprocess

    for round_number in range(3):
        servers = {f"parallel-{round_number}-{writer}.example": f"user{writer}" for writer in range(32)}
        writers = [subprocess.Popen([helper.path, "store"], env=helper.env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in servers]
        for writer, (server, username) in zip(writers, servers.items()):
            writer.stdin.write(json.dumps({"ServerURL": server, "Username": username, "Secret": "s"}).encode())
            writer.stdin.close()
        for writer in writers:
            assert writer.wait(timeout=120) == 0, (writer.stdout.read(), writer.stderr.read())
            writer.stdout.close()
            writer.stderr.close()
        listed = json.loads(helper.list().stdout)
        assert servers.items() <= listed.items(), sorted(set(servers) - set(listed))
