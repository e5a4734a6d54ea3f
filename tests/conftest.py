"""The real test bench: a private keyring, our installed helpers, the Go reference helper.

Nothing here is imitated: a private D-Bus session with an unlocked
gnome-keyring-daemon, credbridge installed by ./install.sh into a
temporary HOME, and /usr/bin/docker-credential-secretservice from Debian.
A missing program fails the run; it never skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

from tests.support import bundle, keyring_session, once, openbao, strictload
from tests.support.process import Result, run
from tests.support.registry import Registry, start_registry

REPO = Path(__file__).resolve().parent.parent
GO_SECRETSERVICE = "/usr/bin/docker-credential-secretservice"


@dataclass(frozen=True)
class Installation:
    home: Path
    bindir: Path

    def executable(self, name: str) -> str:
        return str(self.bindir / name)


def install_env(home: Path) -> dict[str, str]:
    """HOME, PATH and the caller's pip settings: install.sh and build.sh fetch packages as a user's would."""
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CACHE_DIR", "PIP_CONFIG_FILE"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    return env


def installed(home: Path, *args: str) -> Installation:
    done = subprocess.run(
        [str(REPO / "install.sh"), *args], env=install_env(home), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"install.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return Installation(home, home / ".local" / "bin")


@pytest.fixture(scope="session")
def venv_installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    """credbridge installed by ./install.sh into a fresh HOME, as a user would."""
    return installed(tmp_path_factory.mktemp("install-home"))


def bundle_built_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PyInstaller onedir bundle, built by build/build.sh once per run (for every worker)."""
    return bundle.output(
        once.built_once(tmp_path_factory, "bundle-build", lambda scratch: bundle.build(scratch, install_env(scratch)))
    )


@pytest.fixture(scope="session", autouse=True)
def _bundle_begun_beside_the_first_tests(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A minute of PyInstaller, begun as the run starts and built beside the first tests, not when the first
    bundle test needs it: its worker would idle until then, and so would another meeting the build's lock.
    The session waits for it at its end, so no build outlives the run."""
    if not any(
        getattr(item, "callspec", None) and item.callspec.params.get("installation") == "bundle"
        for item in request.session.items
    ):
        yield
        return
    tmp_path_factory.getbasetemp()  # made here, not raced by the thread and this worker's first test
    building = threading.Thread(target=bundle_built_once, args=(tmp_path_factory,), daemon=True)
    building.start()
    yield
    building.join()


@pytest.fixture(scope="session")
def built_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle_built_once(tmp_path_factory)


@pytest.fixture(scope="session")
def bundle_installation(built_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Installation:
    """The bundle installed by ./install.sh --bundle into a fresh HOME: no Python environment at all."""
    return installed(tmp_path_factory.mktemp("bundle-home"), "--bundle", str(built_bundle))


INSTALLATIONS = ["venv", "bundle"]
#: `pytestmark = across_installations` runs a module against each installation in turn; the
#: session fixtures built on `installation` (agents, login sessions) follow it.
across_installations = pytest.mark.parametrize("installation", INSTALLATIONS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def installation(request: pytest.FixtureRequest) -> Installation:
    """Where the helpers under test come from: the venv install, unless across_installations says."""
    return request.getfixturevalue(f"{getattr(request, 'param', 'venv')}_installation")


#: The keyrings this worker's fixtures started and still run: keyring_alive revives them.
LIVE_KEYRINGS: list[keyring_session.PrivateKeyring | keyring_session.PrivateKeePassXC] = []
Keyring = TypeVar("Keyring", keyring_session.PrivateKeyring, keyring_session.PrivateKeePassXC)
#: Homes of keyrings found dead when their fixture ended (a test's last use of them).
KEYRINGS_STOPPED_DEAD: list[Path] = []


@contextmanager
def keyring_started(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[keyring_session.PrivateKeyring]:
    """A private bus + unlocked gnome-keyring in a fresh home, watched by keyring_alive."""
    assert shutil.which("gnome-keyring-daemon"), "gnome-keyring is not installed (apt install gnome-keyring)"
    with watched(keyring_session.start_private_keyring(tmp_path_factory.mktemp("keyring-home"))) as keyring:
        yield keyring


@contextmanager
def watched(keyring: Keyring) -> Iterator[Keyring]:
    """`keyring` in LIVE_KEYRINGS while in use, then stopped (noted if it was found dead)."""
    LIVE_KEYRINGS.append(keyring)
    try:
        yield keyring
    finally:
        LIVE_KEYRINGS.remove(keyring)
        if not keyring.alive():
            KEYRINGS_STOPPED_DEAD.append(keyring.home)
        keyring.stop()


@pytest.fixture(scope="session")
def private_keyring(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[keyring_session.PrivateKeyring]:
    with keyring_started(tmp_path_factory) as keyring:
        yield keyring


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """A test that failed while this worker's gnome-keyring-daemon died is run once more, on the revived
    daemon (keyring_alive warns with the daemon's log). gnome-keyring 42 aborts now and then on its own
    assertion (GLib's invoke_get_property_in_idle_cb); the test then running is its victim, not its cause."""
    from _pytest.runner import runtestprotocol

    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    deaths_before = len(KEYRINGS_STOPPED_DEAD)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    died = len(KEYRINGS_STOPPED_DEAD) > deaths_before or not all(keyring.alive() for keyring in LIVE_KEYRINGS)
    failed = [report for report in reports if report.failed]
    if died and failed:
        warnings.warn(
            f"{item.nodeid} failed ({failed[0].when}) while a keyring daemon died, and was run once more; "
            f"its first attempt: {str(failed[0].longrepr)[-1500:]}",
            stacklevel=1,
        )
        _forget_failed_fixtures(item)
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _forget_failed_fixtures(item: pytest.Item) -> None:
    """A fixture of a wider scope that failed with the daemon is set up again, not re-raised from its cache."""
    for definitions in item._fixtureinfo.name2fixturedefs.values():  # type: ignore[attr-defined]
        for definition in definitions:
            if definition.cached_result is not None and definition.cached_result[2] is not None:
                definition.cached_result = None


@pytest.fixture(autouse=True)
def keyring_alive() -> None:
    """A gnome-keyring-daemon or KeePassXC that died during an earlier test is started again (same home
    and bus), with a warning carrying its last log lines: only the test it died in fails."""
    for keyring in LIVE_KEYRINGS:
        pids = keyring.pids()
        if keyring.revive():
            warnings.warn(
                f"the private keyring in {keyring.home} had died (its processes' pids "
                f"{pids}); started again. Its log ends: {keyring.log_tail()[-1000:]}",
                stacklevel=2,
            )


@pytest.fixture(scope="session")
def private_keepassxc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[keyring_session.PrivateKeePassXC]:
    """KeePassXC's Secret Service on a private bus: the most common provider after gnome-keyring."""
    assert shutil.which("keepassxc") and shutil.which("Xvfb"), "KeePassXC is not installed (apt install keepassxc xvfb)"
    with watched(keyring_session.start_private_keepassxc(tmp_path_factory.mktemp("keepassxc-home"))) as keepassxc:
        yield keepassxc


@contextmanager
def agent_serving(installation: Installation, env: dict[str, str]) -> Iterator[int]:
    """A `credbridge agent` for this environment, up before the first call, stopped after; what it
    said on stderr goes to an unnamed file (none in the session's directories) and into a failure."""
    errors = tempfile.TemporaryFile()
    agent = subprocess.Popen(
        [installation.executable("credbridge"), "agent"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )
    from credbridge import wire

    def sockets() -> list[Path]:  # where the agent puts it: its runtime dir, or the fallback it records
        place = wire.agent_dir(env, create=False) or str(Path(env["XDG_RUNTIME_DIR"]) / "credbridge")
        return list(Path(place).glob("agent-*.sock"))

    deadline = time.monotonic() + 20
    try:
        while not sockets():
            if agent.poll() is not None:
                errors.seek(0)
                said = errors.read().decode(errors="replace")[-2000:]
                raise AssertionError(f"credbridge agent exited at start with {agent.returncode}: {said}")
            assert time.monotonic() < deadline, "credbridge agent did not create its socket"
            time.sleep(0.05)
        yield agent.pid
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)
        errors.close()


@pytest.fixture(scope="session")
def running_agent(installation: Installation, private_keyring: keyring_session.PrivateKeyring) -> Iterator[int]:
    """The per-user agent for the private keyring's environment."""
    with agent_serving(installation, with_helpers_on_path(installation, private_keyring.env)) as pid:
        yield pid


@contextmanager
def fresh_agent_runtime(
    installation: Installation, private_keyring: keyring_session.PrivateKeyring, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The private keyring's environment with a runtime dir no agent has used; its agent killed after
    (by the pid it wrote into its lock file: the venv's and the bundle's agent alike)."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**with_helpers_on_path(installation, private_keyring.env), "XDG_RUNTIME_DIR": str(runtime)}
    keyring_session.delete_all_docker_items(env)
    try:
        yield env
    finally:
        for lock in (runtime / "credbridge").glob("agent-*.lock"):
            pid = lock.read_text().strip()
            if pid.isdigit():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="session")
def keepassxc_agent(installation: Installation, private_keepassxc: keyring_session.PrivateKeePassXC) -> Iterator[int]:
    """The per-user agent for the private KeePassXC's environment."""
    with agent_serving(installation, with_helpers_on_path(installation, private_keepassxc.env)) as pid:
        yield pid


def with_helpers_on_path(installation: Installation, env: dict[str, str]) -> dict[str, str]:
    return {**env, "PATH": f"{installation.bindir}:{env['PATH']}"}


SERVING = ["agent", "direct"]
CRYPTFILE_PASSPHRASE = "correct horse battery staple"


def secret_service_env(provider: str, agent: str) -> "Callable[[pytest.FixtureRequest, str], dict[str, str]]":
    """An env builder: a helper call on the Secret Service of fixture `provider`, emptied of Docker items,
    served by the agent of fixture `agent` or in process."""

    def build(request: pytest.FixtureRequest, serving: str) -> dict[str, str]:
        env = with_helpers_on_path(request.getfixturevalue("installation"), request.getfixturevalue(provider).env)
        if serving == "agent":
            request.getfixturevalue(agent)
        else:
            env["CREDBRIDGE_NO_AGENT"] = "1"
        keyring_session.delete_all_docker_items(env)
        return env

    return build


keyring_env = secret_service_env("private_keyring", "running_agent")
keepassxc_env = secret_service_env("private_keepassxc", "keepassxc_agent")
#: The Secret Service providers helper_env can run on.
SECRET_SERVICES = {"gnome-keyring": keyring_env, "keepassxc": keepassxc_env}
#: `@on_every_secret_service` runs a test of go_helper/keyring_helper on each provider in turn.
on_every_secret_service = pytest.mark.parametrize("secret_service", list(SECRET_SERVICES))


@pytest.fixture
def secret_service() -> str:
    """The provider helper_env runs on: gnome-keyring, unless on_every_secret_service says."""
    return "gnome-keyring"


@pytest.fixture(params=SERVING)
def helper_env(request: pytest.FixtureRequest, installation: Installation, secret_service: str) -> dict[str, str]:
    """Environment for a helper call on a clean private Secret Service, served by the agent or in process."""
    return SECRET_SERVICES[secret_service](request, request.param)


@pytest.fixture(scope="session")
def cryptfile_session(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A login session of its own for cryptfile tests: HOME, XDG dirs, a 0700 runtime dir."""
    home = tmp_path_factory.mktemp("cryptfile-home")
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    return with_helpers_on_path(installation, env)


@pytest.fixture(scope="session")
def cryptfile_agent(installation: Installation, cryptfile_session: dict[str, str]) -> Iterator[int]:
    with agent_serving(installation, cryptfile_session) as pid:
        yield pid


@pytest.fixture(scope="session")
def cryptfile_template(
    installation: Installation, cryptfile_session: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, bytes, bytes]:
    """A fresh cryptfile made by `credbridge unlock --new` once per worker, and its (header, key) from the
    key cache: each test's store is a copy, its key cached as unlock caches it, and no test pays the
    Argon2id derivation (a third of a second of CPU, hundreds of times a run)."""
    from credbridge.stores.cryptfile import keycache

    path = tmp_path_factory.mktemp("cryptfile-template") / "credentials.cbf"
    env = {**cryptfile_session, "CREDBRIDGE_CRYPTFILE": str(path), "CREDBRIDGE_NO_AGENT": "1"}
    env["XDG_STATE_HOME"] = str(path.parent / "state")
    unlocked = run([installation.executable("credbridge"), "unlock", "--new"], CRYPTFILE_PASSPHRASE + "\n", env)
    assert unlocked.returncode == 0, unlocked.stderr
    cached = keycache.load(env, str(path))
    assert cached is not None, "credbridge unlock --new cached no key"
    return path, *cached


def cryptfile_env(request: pytest.FixtureRequest, serving: str) -> dict[str, str]:
    """Environment for a helper call on a fresh cryptfile, unlocked as by `credbridge unlock`, agent or in
    process (a copy of cryptfile_template, its key in the session's key cache)."""
    from credbridge.stores.cryptfile import keycache

    tmp_path: Path = request.getfixturevalue("tmp_path")
    store = tmp_path / "store" / "credentials.cbf"
    env = {
        **request.getfixturevalue("cryptfile_session"),
        "CREDBRIDGE_CRYPTFILE": str(store),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }  # each test's own memory of generations seen
    if serving == "agent":
        request.getfixturevalue("cryptfile_agent")
    else:
        env["CREDBRIDGE_NO_AGENT"] = "1"
    template, header, key = request.getfixturevalue("cryptfile_template")
    store.parent.mkdir(mode=0o700)
    shutil.copyfile(template, store)
    store.chmod(0o600)
    keycache.save(env, str(store), header, key)
    return env


@pytest.fixture(params=SERVING)
def locked_env(request: pytest.FixtureRequest, cryptfile_session: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A cryptfile path that no one has unlocked (and that does not exist yet), agent or in process."""
    env = {**cryptfile_session, "CREDBRIDGE_CRYPTFILE": str(tmp_path / "store" / "credentials.cbf")}
    if request.param == "agent":
        request.getfixturevalue("cryptfile_agent")
    else:
        env["CREDBRIDGE_NO_AGENT"] = "1"
    return env


@pytest.fixture(params=SERVING)
def cryptfile_helper_env(request: pytest.FixtureRequest) -> dict[str, str]:
    return cryptfile_env(request, request.param)


# -- docker-credential-vault on a real OpenBao dev server -----------------------------------------


@pytest.fixture(scope="session")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openbao.DevServer]:
    """`bao server -dev` on a free loopback port (KV v2 at secret/), stopped by PID."""
    dev = openbao.start_dev_server(tmp_path_factory.mktemp("openbao-dev"))
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture(scope="session")
def vault_token(vault_server: openbao.DevServer) -> str:
    """A least-privilege token: read/write under secret/credbridge/, nothing else."""
    return vault_server.token(openbao.READ_WRITE_POLICY, "credbridge-rw")


def vault_env(request: pytest.FixtureRequest, serving: str) -> dict[str, str]:
    """A fresh HOME whose ~/.vault-token holds the least-privilege token, and a prefix of its own, agent or in
    process."""
    tmp_path: Path = request.getfixturevalue("tmp_path")
    home = tmp_path / "vault-home"
    home.mkdir(mode=0o700)
    (home / ".vault-token").touch(mode=0o600)
    (home / ".vault-token").write_text(request.getfixturevalue("vault_token"))
    config = tmp_path / "credbridge.yaml"
    config.write_text(f"vault:\n  prefix: credbridge/{tmp_path.name}-{os.urandom(4).hex()}/\n")
    env = {
        **request.getfixturevalue("cryptfile_session"),
        "HOME": str(home),
        "CREDBRIDGE_CONFIG": str(config),
        "VAULT_ADDR": request.getfixturevalue("vault_server").address,
    }
    if serving == "agent":
        request.getfixturevalue("cryptfile_agent")
    else:
        env["CREDBRIDGE_NO_AGENT"] = "1"
    return env


@pytest.fixture
def keyring_helper(installation: Installation, helper_env: dict[str, str]) -> "Helper":
    return Helper(installation.executable("docker-credential-keyring"), helper_env)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry with htpasswd auth on 127.0.0.1, holding test/hello:latest."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        reg.push_test_image()
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def go_helper(helper_env: dict[str, str]) -> "Helper":
    assert os.access(GO_SECRETSERVICE, os.X_OK), "install golang-docker-credential-helpers"
    return Helper(GO_SECRETSERVICE, helper_env)


@dataclass(frozen=True)
class Helper:
    """One docker-credential-* executable and the environment it runs in."""

    path: str
    env: dict[str, str]

    def __call__(self, *args: str, stdin: bytes | str = b"") -> Result:
        return run([self.path, *args], stdin, self.env)

    def store(self, server: str, username: str, secret: str) -> Result:
        import json

        return self("store", stdin=json.dumps({"ServerURL": server, "Username": username, "Secret": secret}))

    def get(self, server: str) -> Result:
        return self("get", stdin=server)

    def erase(self, server: str) -> Result:
        return self("erase", stdin=server)

    def list(self) -> Result:
        return self("list")


@pytest.fixture(scope="session")
def strict_loader(tmp_path_factory: pytest.TempPathFactory) -> strictload.StrictLoader:
    """Apptainer's and SingularityCE's own decoders, built once, judging the files we write."""
    return strictload.loader(once.built_once(tmp_path_factory, "strictload", strictload.build))


# -- Apptainer / SingularityCE files (docker-credential-apptainer, -singularity) -----------------


def apptainer_files_env(flavour: str) -> "Callable[[pytest.FixtureRequest, str], dict[str, str]]":
    """An env builder for one flavour: a fresh HOME of the cryptfile's login session; at teardown the
    files the test left behind must still load in the program's strict decoders."""

    def build(request: pytest.FixtureRequest, serving: str) -> dict[str, str]:
        home: Path = request.getfixturevalue("tmp_path") / "home"
        home.mkdir(mode=0o700)
        env = {**request.getfixturevalue("cryptfile_session"), "HOME": str(home)}
        if serving == "agent":
            request.getfixturevalue("cryptfile_agent")
        else:
            env["CREDBRIDGE_NO_AGENT"] = "1"
        loader: strictload.StrictLoader = request.getfixturevalue("strict_loader")
        request.addfinalizer(lambda: assert_apptainer_files_load(loader, home, flavour))
        return env

    return build


def assert_apptainer_files_load(loader: strictload.StrictLoader, home: Path, flavour: str) -> None:
    directory = home / f".{flavour}"
    if (directory / "remote.yaml").exists():
        loader.remote_yaml(directory / "remote.yaml", "apptainer" if flavour == "apptainer" else "singularityce")
    if (directory / "docker-config.json").exists():
        loader.docker_config(directory / "docker-config.json")


# -- docker-credential-keyring through a python-keyring backend -----------------------------------

PYTHON_KEYRING_SECRET_SERVICE = "keyring.backends.SecretService:Keyring"
#: python-keyring's SecretService backend marks every item it writes with this attribute.
PYTHON_KEYRING_APPLICATION = "Python keyring library"


def python_keyring_env(chunk_bytes: int) -> "Callable[[pytest.FixtureRequest, str], dict[str, str]]":
    """An env builder: docker-credential-keyring on the private keyring through python-keyring's own
    SecretService backend, values split into parts of `chunk_bytes`, no python-keyring item left over."""

    def build(request: pytest.FixtureRequest, serving: str) -> dict[str, str]:
        env = {
            **keyring_env(request, serving),
            "CREDBRIDGE_KEYRING_BACKEND": PYTHON_KEYRING_SECRET_SERVICE,
            "CREDBRIDGE_KEYRING_CHUNK_BYTES": str(chunk_bytes),
        }
        for _ in range(5):  # one `secret-tool clear` may leave some of a few hundred items
            subprocess.run(
                ["secret-tool", "clear", "application", PYTHON_KEYRING_APPLICATION], env=env, capture_output=True
            )
            left = subprocess.run(
                ["secret-tool", "search", "--all", "application", PYTHON_KEYRING_APPLICATION],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            if not left.stdout.strip():
                return env
        raise AssertionError("python-keyring items remain after secret-tool clear")

    return build


# -- docker-credential-credbridge, the router ------------------------------------------------------

#: Routed: writes go to cryptfile, except *.example.com which goes to the keyring.
ROUTED_CONFIG = 'primary: cryptfile\nroutes:\n  "*.example.com": keyring\n'


def router_env(routed: bool) -> "Callable[[pytest.FixtureRequest, str], dict[str, str]]":
    """An env builder for the router in a fresh HOME, on the clean private keyring and a fresh unlocked
    cryptfile. Not routed: no config file, so the default primary (the reachable keyring) takes every write."""

    def build(request: pytest.FixtureRequest, serving: str) -> dict[str, str]:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        home = tmp_path / "router-home"
        home.mkdir(mode=0o700)
        bus = request.getfixturevalue("private_keyring").env["DBUS_SESSION_BUS_ADDRESS"]
        env = {**cryptfile_env(request, serving), "HOME": str(home), "DBUS_SESSION_BUS_ADDRESS": bus}
        keyring_session.delete_all_docker_items(env)
        if routed:
            config = home / ".config" / "credbridge" / "config.yaml"
            config.parent.mkdir(parents=True)
            config.write_text(ROUTED_CONFIG)
        return env

    return build
