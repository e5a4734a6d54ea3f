"""The store contract: what every docker-credential-* store of ours must do, written once.

The protocol any helper owes (Go's helpers too) is the kit's, credbridge.testing, run here by
TestProtocolContract; the tests below are credbridge's own policy on top. Each store joins
by adding its name and the builder of its environment to STORES (another Secret Service
provider: OTHER_PROVIDERS); every test then runs against its installed executable, through the
agent and in process. A key `executable:variant` runs that executable in another configuration.
"""

from __future__ import annotations

import json

import pytest

from credbridge.testing.calls import HelperCommand
from credbridge.testing.contract import HelperContract
from tests.conftest import (
    SERVING,
    Helper,
    Installation,
    across_installations,
    apptainer_files_env,
    cryptfile_env,
    keepassxc_env,
    keyring_env,
    python_keyring_env,
    router_env,
    vault_env,
)

pytestmark = across_installations  # the venv install and the PyInstaller bundle alike

NOT_FOUND = b"credentials not found in native keychain\n"
#: Every store; the adversarial matrix (tests/support/matrix.py) runs over these too.
STORES = {
    "keyring": keyring_env,
    "cryptfile": cryptfile_env,
    "apptainer": apptainer_files_env("apptainer"),
    "singularity": apptainer_files_env("singularity"),
    "keyring:python-keyring": python_keyring_env(chunk_bytes=1024),
    "vault": vault_env,
    "credbridge": router_env(routed=False),
    "credbridge:routed": router_env(routed=True),
}
#: docker-credential-keyring on other Secret Service providers: what differs is how the provider answers
#: (prompts, signals, search), which the contract proves; the matrix's attacks on the helper would only repeat.
OTHER_PROVIDERS = {"keyring:keepassxc": keepassxc_env}
CONTRACT = {**STORES, **OTHER_PROVIDERS}


CONTRACT_PARAMS = [(store, serving) for store in CONTRACT for serving in SERVING]


def contract_helper(request: pytest.FixtureRequest, installation: Installation, store: str, serving: str) -> Helper:
    return Helper(
        installation.executable(f"docker-credential-{store.partition(':')[0]}"), CONTRACT[store](request, serving)
    )


@pytest.fixture(params=CONTRACT_PARAMS, ids=lambda param: "-".join(param))
def helper(request: pytest.FixtureRequest, installation: Installation) -> Helper:
    return contract_helper(request, installation, *request.param)


#: (installation, store, serving) -> the helper every check of the kit runs on.
_KIT_HELPERS: dict[tuple[str, str, str], Helper] = {}


@pytest.fixture(params=CONTRACT_PARAMS, ids=lambda param: "-".join(param))
def kit_helper(request: pytest.FixtureRequest, installation: Installation) -> Helper:
    """One store a store, serving and installation, built for the first check and kept: each check
    erases what it stored and fails if any of it is left, as on a user's store (a fresh store for
    each of the hundreds of checks would cost minutes of setup)."""
    key = (str(installation.bindir), *request.param)
    if key not in _KIT_HELPERS:
        _KIT_HELPERS[key] = contract_helper(request, installation, *request.param)
    return _KIT_HELPERS[key]


class TestProtocolContract(HelperContract):
    """The contract kit's checks on every store, served by the agent and in process."""

    @pytest.fixture(autouse=True)
    def _run(self, kit_helper: Helper) -> None:
        self.command = HelperCommand([kit_helper.path], kit_helper.env)

    def helper_command(self) -> HelperCommand:
        return self.command


def stored(helper: Helper, server: str, username: str, secret: str) -> None:
    result = helper.store(server, username, secret)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def got(helper: Helper, server: str) -> dict[str, str]:
    result = helper.get(server)
    assert result.returncode == 0, result.text
    assert result.stderr == b""
    return json.loads(result.stdout)


def test_second_username_on_one_server_replaces_the_first(helper: Helper) -> None:
    """The latest login wins, as a user switching accounts expects (Go keeps both and picks either)."""
    stored(helper, "registry.example.com", "alice", "a")
    stored(helper, "registry.example.com", "bob", "b")
    assert got(helper, "registry.example.com")["Username"] == "bob"
    assert json.loads(helper.list().stdout) == {"registry.example.com": "bob"}


def test_erase_of_an_absent_server_succeeds_silently(helper: Helper) -> None:
    """containers/image cannot recognise a not-found answer to erase: logout would fail (Go's pass fails it)."""
    result = helper.erase("never-stored.example")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_get_of_an_unknown_server_is_the_exact_not_found_line(helper: Helper) -> None:
    """Never the empty login Go's pass 0.6.4 answers, which the contract kit lets pass."""
    result = helper.get("unknown.example")
    assert (result.returncode, result.stdout, result.stderr) == (1, NOT_FOUND, b"")


def test_list_of_an_empty_store_is_an_empty_object(helper: Helper) -> None:
    assert helper.list().stdout == b"{}\n"


@pytest.mark.parametrize(
    "stored_as, asked_as",
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("docker.io", "https://index.docker.io/v1/"),
        ("https://index.docker.io/v1/", "registry-1.docker.io"),
        ("registry.example.com", "https://registry.example.com"),
        ("https://registry.example.com/", "registry.example.com"),
        ("Registry.Example.COM:5000", "registry.example.com:5000"),
    ],
    ids=["docker-login-then-podman", "podman-then-docker", "hub-api-host", "scheme-added", "scheme-and-slash", "case"],
)
def test_one_registry_is_found_under_its_other_spellings(helper: Helper, stored_as: str, asked_as: str) -> None:
    stored(helper, stored_as, "alice", "s3cret")
    answer = got(helper, asked_as)
    assert (answer["ServerURL"], answer["Secret"]) == (asked_as, "s3cret")


def test_exact_key_wins_over_another_spelling(helper: Helper) -> None:
    stored(helper, "https://index.docker.io/v1/", "docker-user", "from-docker")
    stored(helper, "docker.io", "podman-user", "from-podman")
    assert got(helper, "docker.io")["Secret"] == "from-podman"
    assert got(helper, "https://index.docker.io/v1/")["Secret"] == "from-docker"


def test_the_hubs_token_key_never_gets_the_hub_login(helper: Helper) -> None:
    """Lookalike hosts are the kit's; this key is one only our docker.io spellings could confuse."""
    stored(helper, "https://index.docker.io/v1/", "hub", "hub-secret")
    result = helper.get("https://index.docker.io/v1/access-token")
    assert (result.returncode, result.stdout) == (1, NOT_FOUND)


def test_erase_removes_every_spelling_of_the_registry_and_nothing_else(helper: Helper) -> None:
    stored(helper, "https://index.docker.io/v1/", "alice", "1")
    stored(helper, "docker.io", "alice", "2")
    stored(helper, "https://index.docker.io/v1/access-token", "alice", "3")
    stored(helper, "docker.io.evil.net", "mallory", "4")
    assert helper.erase("docker.io").returncode == 0
    assert json.loads(helper.list().stdout) == {
        "https://index.docker.io/v1/access-token": "alice",
        "docker.io.evil.net": "mallory",
    }


def test_thirty_two_processes_storing_at_once_lose_nothing(helper: Helper) -> None:
    """Parallel batch jobs log in at the same moment; every acknowledged store is there afterwards, both when
    they create the store and when they add to one that holds logins."""
    import subprocess

    for round_number in range(2):
        servers = {f"parallel-{round_number}-{writer}.example": f"user{writer}" for writer in range(32)}
        writers = [
            subprocess.Popen(
                [helper.path, "store"],
                env=helper.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in servers
        ]
        for writer, (server, username) in zip(writers, servers.items()):
            writer.stdin.write(json.dumps({"ServerURL": server, "Username": username, "Secret": "s"}).encode())
            writer.stdin.close()
        for writer in writers:
            assert writer.wait(timeout=120) == 0, (writer.stdout.read(), writer.stderr.read())
            writer.stdout.close()
            writer.stderr.close()
        listed = json.loads(helper.list().stdout)
        assert servers.items() <= listed.items(), sorted(set(servers) - set(listed))
