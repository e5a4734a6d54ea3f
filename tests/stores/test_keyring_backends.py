"""docker-credential-keyring beyond Linux's Secret Service: python-keyring backends chosen explicitly.

macOS and Windows cannot run here, so what is theirs is proved through
python-keyring's own backend interface: its real SecretService backend on the
private gnome-keyring, with the Windows blob limit (2560 UTF-16 bytes)
imposed, and the backends' own capability checks on this machine. The store
contract runs over it too (tests/contract/test_store_contract.py).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credbridge.stores.pykeyring import PART_PREFIX, split
from tests.conftest import (
    GO_SECRETSERVICE,
    PYTHON_KEYRING_APPLICATION,
    PYTHON_KEYRING_SECRET_SERVICE,
    Helper,
    Installation,
    agent_serving,
    python_keyring_env,
)
from tests.support import keyring_session

WINDOWS_BLOB_LIMIT = 2560
#: A registry token as Windows would refuse it whole: ~7 KB, with characters UTF-16 stores in 4 bytes.
BIG_TOKEN = "eyJhbGciOiJSUzI1NiJ9." + "payload-🔑-密码-" * 400 + ".signature"


def encoded_size(text: str) -> int:
    return len(text.encode("utf-16-le", errors="surrogatepass"))


@given(value=st.text(), limit=st.integers(min_value=4, max_value=64))
def test_split_parts_join_back_and_each_fits_the_utf16_limit(value: str, limit: int) -> None:
    parts = split(value, limit)
    assert "".join(parts) == value
    assert all(encoded_size(part) <= limit for part in parts)
    assert all(parts) or parts == [""]


@given(value=st.text(), limit=st.integers(min_value=4, max_value=64))
def test_split_fills_each_part_counting_surrogate_pairs_as_four_bytes(value: str, limit: int) -> None:
    """Each part but the last is full: one more character would not fit, so no part is cut short by miscounting."""
    parts = split(value, limit)
    assert all(encoded_size(part + following[0]) > limit for part, following in zip(parts, parts[1:]))


# -- through the installed helper, python-keyring's SecretService backend ----------------------------------


@pytest.fixture(params=["agent", "direct"])
def windows_sized(request: pytest.FixtureRequest, installation: Installation) -> Helper:
    """docker-credential-keyring through python-keyring, splitting at Windows' blob limit."""
    env = python_keyring_env(WINDOWS_BLOB_LIMIT)(request, request.param)
    return Helper(installation.executable("docker-credential-keyring"), env)


def python_keyring_items(env: dict[str, str]) -> dict[str, str]:
    """service -> stored password of every item python-keyring wrote, as the keyring itself reports them
    (over D-Bus: `secret-tool search` prints secrets on stdout and attributes on stderr, which cannot be
    paired again)."""
    import secretstorage
    from jeepney.io.blocking import open_dbus_connection

    with open_dbus_connection(env["DBUS_SESSION_BUS_ADDRESS"]) as connection:
        found = secretstorage.search_items(connection, {"application": PYTHON_KEYRING_APPLICATION})
        return {item.get_attributes()["service"]: item.get_secret().decode() for item in found}


def test_a_token_bigger_than_a_windows_blob_is_stored_in_parts_that_each_fit(windows_sized: Helper) -> None:
    assert windows_sized.store("registry.example.com", "alice", BIG_TOKEN).returncode == 0
    got = windows_sized.get("registry.example.com")
    assert json.loads(got.stdout)["Secret"] == BIG_TOKEN
    stored = python_keyring_items(windows_sized.env)
    assert len(stored) > 4, "the token went into one entry"
    assert max(encoded_size(value) for value in stored.values()) <= WINDOWS_BLOB_LIMIT


def test_overwrite_and_erase_leave_no_part_behind(windows_sized: Helper) -> None:
    assert windows_sized.store("registry.example.com", "alice", BIG_TOKEN).returncode == 0
    assert windows_sized.store("registry.example.com", "bob", "short").returncode == 0
    after_overwrite = python_keyring_items(windows_sized.env)
    assert len(after_overwrite) == 4, sorted(after_overwrite)  # index and credential: a head and one part each
    assert not any("payload" in value for value in after_overwrite.values())
    assert windows_sized.erase("registry.example.com").returncode == 0
    after_erase = python_keyring_items(windows_sized.env)
    assert len(after_erase) == 2 and all(service.endswith("credbridge-index") for service in after_erase), sorted(
        after_erase
    )
    assert windows_sized.list().stdout == b"{}\n"


@pytest.mark.parametrize(
    "secret",
    ["pässwörd-密码-🔑", "🔑🗝🔐", 'with "quotes" \\ & <html> \u2028'],
    ids=["unicode", "surrogate-pairs", "json-special-characters"],
)
def test_values_split_into_the_smallest_parts_come_back_verbatim(
    request: pytest.FixtureRequest, installation: Installation, secret: str
) -> None:
    helper = Helper(installation.executable("docker-credential-keyring"), python_keyring_env(4)(request, "direct"))
    assert (
        helper("store", stdin=json.dumps({"ServerURL": "r.example", "Username": "ü", "Secret": secret})).returncode == 0
    )
    assert json.loads(helper.get("r.example").stdout) == {"ServerURL": "r.example", "Username": "ü", "Secret": secret}
    parts = [value for service, value in python_keyring_items(helper.env).items() if service.startswith(PART_PREFIX)]
    assert max(encoded_size(part) for part in parts) == 4  # the heads (`credbridge-1 <generation> <count>`) are whole


def without_posix(launcher: Path, directory: Path) -> str:
    """The installed launcher with credbridge's code seeing Windows' modules: `import posix` fails, the builtin
    `nt` imports. The standard library and python-keyring are loaded first, as they load on Windows itself."""
    windows = (
        "import sys\nsys.path.append(%r)\nimport os, keyring.backends.SecretService\n"
        "sys.modules['nt'] = sys.modules['posix']\nsys.modules['posix'] = None\n"
    )
    text = launcher.read_text()
    site_packages = text.split("sys.path.append(", 1)[1].split(")", 1)[0]
    copy = directory / launcher.name
    copy.write_text(text.replace("import sys\n", windows % ast.literal_eval(site_packages), 1))
    copy.chmod(0o700)
    return str(copy)


def test_a_helper_without_the_posix_module_serves_every_action_in_process(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path
) -> None:
    """Windows has no `posix` module and no Unix-socket agent: the same launcher serves the call itself."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**python_keyring_env(WINDOWS_BLOB_LIMIT)(request, "agent"), "XDG_RUNTIME_DIR": str(runtime)}
    helper = Helper(without_posix(Path(installation.executable("docker-credential-keyring")), tmp_path), env)
    stored = helper.store("registry.example.com", "alice", BIG_TOKEN)
    assert (stored.returncode, stored.stdout, stored.stderr) == (0, b"", b"")
    assert json.loads(helper.get("registry.example.com").stdout)["Secret"] == BIG_TOKEN
    assert helper.list().stdout == b'{"registry.example.com":"alice"}\n'
    assert helper("version").stdout.startswith(b"docker-credential-keyring (credbridge) ")
    assert helper.erase("registry.example.com").returncode == 0
    assert helper.get("registry.example.com").stdout == b"credentials not found in native keychain\n"
    assert not (runtime / "credbridge").exists(), "no agent is looked for or started without posix"


def test_an_agent_started_without_the_callers_bus_serves_python_keyring_on_the_callers_bus(
    request: pytest.FixtureRequest, installation: Installation, tmp_path: Path
) -> None:
    """A helper starts the agent with PATH, HOME and XDG_RUNTIME_DIR only; python-keyring's backends find
    the session bus in the process environment, so the agent must lend them each caller's."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**python_keyring_env(WINDOWS_BLOB_LIMIT)(request, "agent"), "XDG_RUNTIME_DIR": str(runtime)}
    agent_env = {name: env[name] for name in ("PATH", "HOME", "XDG_RUNTIME_DIR")}
    with agent_serving(installation, agent_env):
        helper = Helper(installation.executable("docker-credential-keyring"), env)
        stored = helper.store("registry.example.com", "alice", "s3cret")
        assert (stored.returncode, stored.stdout) == (0, b""), stored.text
        assert json.loads(helper.get("registry.example.com").stdout)["Secret"] == "s3cret"
        assert helper.erase("registry.example.com").returncode == 0


# -- choosing the backend --------------------------------------------------------------------------------


@pytest.fixture
def direct_env(helper_env: dict[str, str]) -> dict[str, str]:
    return {**helper_env, "CREDBRIDGE_NO_AGENT": "1"}


@pytest.mark.parametrize(
    "choice, cause",
    [
        ("macos", "the keyring (macOS Keychain) cannot be used here (macOS required)"),
        ("windows", "the keyring (Windows Credential Locker) cannot be used here (Requires Windows and pywin32)"),
        ("keyring.backends.null:Keyring", "python-keyring rates it -1"),
        ("keyring.backends.nowhere:Keyring", "cannot load the keyring backend keyring.backends.nowhere:Keyring"),
        ("json:JSONDecoder", "json:JSONDecoder is not a python-keyring backend class"),
        ("gnome", "unknown CREDBRIDGE_KEYRING_BACKEND='gnome'"),
    ],
    ids=["macos-on-linux", "windows-on-linux", "null-backend", "missing-module", "not-a-backend", "unknown-name"],
)
def test_a_backend_unusable_here_is_one_line_naming_the_cause(
    installation: Installation, direct_env: dict[str, str], choice: str, cause: str
) -> None:
    helper = Helper(
        installation.executable("docker-credential-keyring"), {**direct_env, "CREDBRIDGE_KEYRING_BACKEND": choice}
    )
    result = helper.get("registry.example.com")
    assert (result.returncode, result.stderr) == (1, b"")
    assert result.text.count("\n") == 1 and cause in result.text, result.text


def test_a_chunk_size_too_small_for_one_character_is_refused(
    installation: Installation, direct_env: dict[str, str]
) -> None:
    env = {
        **direct_env,
        "CREDBRIDGE_KEYRING_BACKEND": PYTHON_KEYRING_SECRET_SERVICE,
        "CREDBRIDGE_KEYRING_CHUNK_BYTES": "3",
    }
    result = Helper(installation.executable("docker-credential-keyring"), env).list()
    assert (result.returncode, result.text) == (1, "CREDBRIDGE_KEYRING_CHUNK_BYTES='3' is not a number of bytes >= 4\n")


def imported_modules(installation: Installation, env: dict[str, str]) -> set[str]:
    """Every module a direct `list` call imports, from the interpreter's own -X importtime report."""
    launcher = Path(installation.executable("docker-credential-keyring"))
    interpreter = launcher.read_text().splitlines()[0][2:].split()[0]
    done = subprocess.run(
        [interpreter, "-I", "-S", "-X", "importtime", str(launcher), "list"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout
    return {line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def test_the_linux_default_never_imports_python_keyring(installation: Installation, direct_env: dict[str, str]) -> None:
    """`import keyring` alone costs ~0.2 s: the Secret Service path must not pay it."""
    modules = imported_modules(installation, direct_env)
    assert "credbridge.stores.secretservice" in modules
    assert not {module for module in modules if module.split(".")[0] == "keyring"}


def test_a_chosen_backend_is_imported_alone_without_scanning_the_others(
    installation: Installation, direct_env: dict[str, str]
) -> None:
    modules = imported_modules(
        installation, {**direct_env, "CREDBRIDGE_KEYRING_BACKEND": PYTHON_KEYRING_SECRET_SERVICE}
    )
    assert "keyring.backend" in modules
    others = {
        "keyring.backends.kwallet",
        "keyring.backends.Windows",
        "keyring.backends.macOS",
        "keyring.backends.libsecret",
        "keyring.backends.chainer",
    }
    assert not modules & others


# -- KDE: kwalletd5's own Secret Service API, headless ---------------------------------------------------

KWALLETRC = (
    "[Wallet]\nEnabled=true\nFirst Use=false\nDefault Wallet=kdewallet\n\n[org.freedesktop.secrets]\napiEnabled=true\n"
)


@contextmanager
def kwalletd(env: dict[str, str], home: Path, ready: Callable[[], bool]) -> Iterator[None]:
    """kwalletd5 opening `kdewallet` the way pam_kwallet5 does at login, so no wallet dialog is ever shown.

    `--pam-login <pipe> <listening socket>` (only with PAM_KWALLET5_LOGIN
    set): the 56-byte wallet key comes on the pipe, the session environment
    on one connection to the socket. A first start creates the wallet.
    """
    environment_socket = home / "run" / "kwallet-env.sock"
    environment_socket.unlink(missing_ok=True)
    key_read, key_write = os.pipe()
    with socket.socket(socket.AF_UNIX) as listener, (home / "kwalletd5.log").open("ab") as log:
        listener.bind(str(environment_socket))
        listener.listen(1)
        daemon = subprocess.Popen(
            ["kwalletd5", "--pam-login", str(key_read), str(listener.fileno())],
            env={**env, "PAM_KWALLET5_LOGIN": "1"},
            pass_fds=(key_read, listener.fileno()),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    os.close(key_read)
    try:
        os.write(key_write, hashlib.sha512(b"test wallet key").digest()[:56])
        os.close(key_write)
        with socket.socket(socket.AF_UNIX) as session:
            session.connect(str(environment_socket))
        deadline = time.monotonic() + 60
        while not ready():
            assert daemon.poll() is None, (home / "kwalletd5.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "kwalletd5 did not get ready within 60 s"
            time.sleep(0.1)
        yield
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def default_collection_is_kdewallet(env: dict[str, str]) -> bool:
    alias = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.ReadAlias",
            "string:default",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    return "/collection/kdewallet" in alias.stdout


@pytest.fixture(scope="module")
def kwallet_env(tmp_path_factory: pytest.TempPathFactory, installation: Installation) -> Iterator[dict[str, str]]:
    """A private session bus served by a real kwalletd5 (Debian: libkf5wallet-bin, libqca-qt5-2-plugins for DH)."""
    assert shutil.which("kwalletd5"), "kwalletd5 is not installed (apt install libkf5wallet-bin libqca-qt5-2-plugins)"
    home = tmp_path_factory.mktemp("kwallet-home")
    (home / ".config").mkdir()
    (home / ".config" / "kwalletrc").write_text(KWALLETRC)
    with keyring_session.bus_without_secret_service(home) as env:
        env.update(
            QT_QPA_PLATFORM="offscreen",
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            CREDBRIDGE_NO_AGENT="1",
        )
        wallet = home / ".local" / "share" / "kwalletd" / "kdewallet.kwl"
        with kwalletd(env, home, ready=wallet.exists):
            pass  # collections are built at start-up: the wallet must exist before the serving start
        served = {**env, "PATH": f"{installation.bindir}:{env['PATH']}"}
        with kwalletd(env, home, ready=lambda: default_collection_is_kdewallet(env) and wallet_is_open(served)):
            yield served


def wallet_is_open(env: dict[str, str]) -> bool:
    """kwalletd opens the wallet with the login's key a moment after serving it (seconds, on a loaded machine)."""
    probe = Helper("docker-credential-keyring", env)
    return (
        probe.store("readiness.probe.invalid", "probe", "probe").returncode == 0
        and probe.erase("readiness.probe.invalid").returncode == 0
    )


def secret_read_from_kwallet(helper: Helper, server: str, attempts: int = 3) -> str:
    """kwalletd5 5.103 now and then answers a read with a value that does not decrypt under the session key
    (seen with Go's helper, secretstorage and ours alike, about 1 read in 20 from a fresh process): a read
    must succeed within a few fresh attempts, and what it returns must be the stored secret."""
    results = []
    for _ in range(attempts):
        result = helper.get(server)
        if result.returncode == 0:
            return json.loads(result.stdout)["Secret"]
        results.append(result)
    raise AssertionError(f"{helper.path} get failed {attempts} times: {results}")


def test_kwallet_serves_docker_credential_keyring_through_its_secret_service_api(kwallet_env: dict[str, str]) -> None:
    """KDE needs no python-keyring: kwalletd5 (KF >= 5.97) speaks org.freedesktop.secrets to the default store."""
    ours = Helper("docker-credential-keyring", kwallet_env)
    go = Helper(GO_SECRETSERVICE, kwallet_env)
    assert ours.store("registry.example.com", "alice", "s3cret-in-kwallet").returncode == 0
    assert secret_read_from_kwallet(ours, "https://registry.example.com/") == "s3cret-in-kwallet"
    assert secret_read_from_kwallet(go, "registry.example.com") == "s3cret-in-kwallet"
    assert json.loads(ours.list().stdout) == {"registry.example.com": "alice"}
    assert ours.erase("registry.example.com").returncode == 0
    assert ours.get("registry.example.com").returncode == 1
