"""Throw-away Secret Services (gnome-keyring, KeePassXC) for tests and benchmarks.

Why: the secretservice helpers must be exercised against a real
org.freedesktop.secrets implementation, but never against the developer's own
keyring or session bus.  Everything here lives under one scratch HOME with its
own D-Bus session bus, and the environment we hand out contains nothing from
the caller's environment except PATH.

Both daemons run as direct children (``dbus-daemon --nofork``,
``gnome-keyring-daemon --foreground``) rather than forking: that gives us their
exact PIDs, lets ``stop()`` reap them, and keeps their stderr in log files
under HOME for error messages.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping
from xml.sax.saxutils import escape

DEFAULT_PASSWORD = "test-password"
DOCKER_SCHEMA = "io.docker.Credentials"
SECRETSERVICE_HELPER = "/usr/bin/docker-credential-secretservice"
_DEFAULT = "/org/freedesktop/secrets/aliases/default"
_PROBE = {"ServerURL": "probe.invalid", "Username": "u", "Secret": "s"}
# gnome-keyring control protocol (daemon/control/gkd-control-codes.h).
_OP_UNLOCK = 1
_CONTROL_RESULTS = {0: "OK", 1: "DENIED (wrong password)", 2: "FAILED", 3: "NO_DAEMON"}


class _Daemons:
    """What the bench asks of a private Secret Service it watches: are its processes all still running."""

    _procs: list[subprocess.Popen]

    def alive(self) -> bool:
        return bool(self._procs) and all(proc.poll() is None for proc in self._procs)

    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]


@dataclass
class PrivateKeyring(_Daemons):
    """A running private bus + gnome-keyring; ``env`` is complete for children."""

    home: Path
    env: dict[str, str]
    dbus_pid: int
    keyring_pid: int
    control_socket: Path
    keyring_output: dict[str, str] = field(default_factory=dict)
    password: str = DEFAULT_PASSWORD
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Kill both daemons by PID and reap them; safe to call repeatedly.

        The bus goes first: gnome-keyring exits on its own when its bus
        disappears, and no client can D-Bus-activate a replacement any more.
        """
        while self._procs:
            _terminate(self._procs.pop(0))

    def revive(self) -> bool:
        """Start bus and daemon again in the same home if either has died; True if it had to.

        gnome-keyring-daemon 42 aborted once in a parallel run (GLib's
        invoke_get_property_in_idle_cb assertion, its caller already gone from
        its client table); the same home keeps env, bus address and items.
        """
        if self.alive():
            return False
        self.stop()
        fresh = start_private_keyring(self.home, self.password)
        self.dbus_pid, self.keyring_pid = fresh.dbus_pid, fresh.keyring_pid
        self._procs = fresh._procs
        return True

    def log_tail(self) -> str:
        """The end of gnome-keyring-daemon's log: why it died, for the warning that says so."""
        return _tail(self.home / "gnome-keyring.log")

    def __enter__(self) -> "PrivateKeyring":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_private_keyring(home: Path, password: str = DEFAULT_PASSWORD, timeout: float = 10.0) -> PrivateKeyring:
    """Start a private session bus and an unlocked gnome-keyring under ``home``.

    Returns only once a docker-credential-secretservice store/get/erase round
    trip works against the ``default`` alias; raises RuntimeError otherwise.
    """
    home = Path(home).absolute()
    run = home / "run"
    for d in (home, run):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        d.chmod(0o700)
    control = run / "keyring" / "control"
    if len(os.fsencode(control)) > 100:  # sun_path is 108 bytes on Linux
        raise RuntimeError(f"{home} is too long for gnome-keyring's unix socket {control}")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(run),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
    }
    procs: list[subprocess.Popen] = []
    try:
        bus = _start_bus(home, env)
        procs.append(bus)
        env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={run / 'bus'}"
        keyring_log = home / "gnome-keyring.log"
        # appended: a revived daemon's log keeps its predecessor's last words
        with keyring_log.open("ab") as log:
            gk = _popen(
                ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=home,
            )
        procs.append(gk)
        try:
            gk.stdin.write(password.encode())
            gk.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; _wait_until_usable reports its log

        keyring = PrivateKeyring(home, env, bus.pid, gk.pid, control, password=password, _procs=procs)
        _wait_until_usable(keyring, gk, keyring_log, timeout)
        # gnome-keyring 42 prints nothing for --components=secrets; parse anyway.
        keyring.keyring_output = _parse_env_lines(keyring_log.read_text(errors="replace"))
        if "GNOME_KEYRING_CONTROL" in keyring.keyring_output:
            keyring.control_socket = Path(keyring.keyring_output["GNOME_KEYRING_CONTROL"]) / "control"
        return keyring
    except BaseException:
        while procs:
            _terminate(procs.pop(0))
        raise


def _start_bus(home: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a session-type dbus-daemon on HOME/run/bus and wait until it listens.

    Our own config has no service directories: with the stock session.conf
    the bus would D-Bus-activate a second ``gnome-keyring-daemon --start``
    (it escapes to PID 1 and outlives stop()) and would spawn gcr-prompter.
    Without activation, a prompt simply fails, as on a headless machine.
    """
    config = home / "dbus-session.conf"
    config.write_text(_BUS_CONFIG.format(address=escape(f"unix:path={home / 'run' / 'bus'}")))
    log = (home / "dbus-daemon.log").open("ab")
    with log:
        bus = _popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=home,
        )
    # dbus-daemon prints the address only once it is listening (EOF if it died).
    line = bus.stdout.readline().decode().strip()
    bus.stdout.close()
    if not line.startswith("unix:"):
        _terminate(bus)
        raise RuntimeError(f"dbus-daemon did not start: {_tail(home / 'dbus-daemon.log')}")
    return bus


_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _wait_until_usable(kr: PrivateKeyring, gk: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll until the default collection is unlocked, owned by *our* daemon,
    and actually stores and returns a secret."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        if gk.poll() is not None:
            raise RuntimeError(f"gnome-keyring-daemon exited with {gk.returncode}: {_tail(log)}")
        res = _dbus_send(
            kr.env,
            _DEFAULT,
            "org.freedesktop.DBus.Properties.Get",
            "string:org.freedesktop.Secret.Collection",
            "string:Locked",
        )
        if res.returncode == 0 and "boolean false" in res.stdout:
            break
        last = (res.stdout + res.stderr).strip()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"default collection not unlocked after {timeout}s: {last}; gnome-keyring log: {_tail(log)}"
            )
        time.sleep(0.1)
    _assert_name_owned_by(kr.env, gk.pid)
    helper_round_trip(kr.env)


def helper_round_trip(env: Mapping[str, str]) -> None:
    """store/get/erase a probe credential with docker-credential-secretservice."""
    _run([SECRETSERVICE_HELPER, "store"], env, json.dumps(_PROBE))
    got = json.loads(_run([SECRETSERVICE_HELPER, "get"], env, _PROBE["ServerURL"]).stdout)
    if got != _PROBE:
        raise RuntimeError(f"secretservice helper returned {got!r}, expected {_PROBE!r}")
    _run([SECRETSERVICE_HELPER, "erase"], env, _PROBE["ServerURL"])


def is_default_collection_locked(env: Mapping[str, str]) -> bool:
    """Read the Locked property of the collection behind the default alias."""
    out = _run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            _DEFAULT,
            "org.freedesktop.DBus.Properties.Get",
            "string:org.freedesktop.Secret.Collection",
            "string:Locked",
        ],
        env,
    ).stdout
    return "boolean true" in out


def lock_default_collection(env: Mapping[str, str]) -> None:
    """Lock the default collection (Secret Service Lock needs no prompt).

    Beware: docker-credential-secretservice 0.6.4 (Debian) then crashes with
    SIGSEGV (exit 2) on ``get`` instead of reporting an error, because the
    unlock prompt is dismissed at once when no display exists.
    """
    _run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            f"array:objpath:{_DEFAULT}",
        ],
        env,
    )
    if not is_default_collection_locked(env):
        raise RuntimeError("default collection still unlocked after Lock")


def unlock_default_collection(env: Mapping[str, str], password: str = DEFAULT_PASSWORD) -> None:
    """Unlock the *login* keyring (our default) without a prompter.

    Secret Service Unlock always wants a GUI prompt, and a second
    ``gnome-keyring-daemon --unlock`` would start a rival daemon (``--start``
    refuses ``--unlock``).  So we speak the daemon's control-socket protocol,
    exactly like pam_gnome_keyring does at login.
    """
    control = Path(env["XDG_RUNTIME_DIR"]) / "keyring" / "control"
    pw = password.encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(control))
        # One credentials byte (daemon checks SO_PEERCRED), then
        # [u32 packet length][u32 op][u32 arg length][arg], all big-endian.
        s.sendall(b"\0" + struct.pack(">III", 12 + len(pw), _OP_UNLOCK, len(pw)) + pw)
        reply = b""
        while len(reply) < 8:
            chunk = s.recv(8 - len(reply))
            if not chunk:
                break
            reply += chunk
    if len(reply) != 8:
        raise RuntimeError(f"short reply {reply!r} from gnome-keyring control socket {control}")
    result = struct.unpack(">II", reply)[1]
    if result != 0:
        raise RuntimeError(f"gnome-keyring unlock failed: {_CONTROL_RESULTS.get(result, result)}")
    if is_default_collection_locked(env):
        raise RuntimeError("control socket said OK but the default collection is still locked")


def delete_all_docker_items(env: Mapping[str, str]) -> None:
    """Remove every item with xdg:schema=io.docker.Credentials, then verify.

    The collection must be unlocked.  ``secret-tool clear`` exits 1 when
    nothing matched, so success is judged by searching again afterwards;
    one clear may leave some of a few hundred items, so it is repeated.
    """
    for _ in range(5):
        res = _run(["secret-tool", "clear", "xdg:schema", DOCKER_SCHEMA], env, check=False)
        left = _run(["secret-tool", "search", "--all", "xdg:schema", DOCKER_SCHEMA], env, check=False)
        if not left.stdout.strip():
            return
    raise RuntimeError(
        f"docker items remain after secret-tool clear "
        f"(rc={res.returncode}, stderr={res.stderr.strip()!r}): {left.stdout[:500]}"
    )


@contextmanager
def docker_items(env: Mapping[str, str], items: Mapping[str, str]) -> Iterator[None]:
    """Items as Go's helper writes them (server -> username; label = server), created and deleted over one
    connection, one call at a time: hundreds of `secret-tool` processes cost a minute, and its own search
    meets the bus's limit of awaited replies."""
    import secretstorage
    from jeepney.io.blocking import open_dbus_connection

    with open_dbus_connection(env["DBUS_SESSION_BUS_ADDRESS"]) as connection:
        collection = secretstorage.get_default_collection(connection)
        created = []
        try:
            for server, username in items.items():
                attributes = {
                    "label": "Docker Credentials",
                    "server": server,
                    "username": username,
                    "docker_cli": "1",
                    "xdg:schema": DOCKER_SCHEMA,
                }
                created.append(collection.create_item(server, attributes, b"pw"))
            yield
        finally:  # also when a create failed midway: the keyring is the worker's, shared by the next tests
            for item in created:
                item.delete()


def _dbus_send(env: Mapping[str, str], path: str, method: str, *args: str) -> subprocess.CompletedProcess:
    return _run(
        ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.secrets", path, method, *args],
        env,
        check=False,
    )


def _run(
    argv: list[str], env: Mapping[str, str], stdin: str | None = None, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Run a command with ``env`` only; a missing program or failure raises."""
    try:
        res = subprocess.run(argv, input=stdin or "", capture_output=True, text=True, env=dict(env), timeout=timeout)
    except FileNotFoundError as e:
        raise RuntimeError(f"required program not installed: {argv[0]}") from e
    if check and res.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:2])} failed with {res.returncode}: "
            f"stdout={res.stdout.strip()!r} stderr={res.stderr.strip()[-2000:]!r}"
        )
    return res


def _popen(argv: list[str], **kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(argv, **kwargs)
    except FileNotFoundError as e:
        raise RuntimeError(f"required program not installed: {argv[0]}") from e


def _terminate(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, wait, SIGKILL; always reaps so nothing lingers as a zombie."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()


def _parse_env_lines(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in text.splitlines()
        if "=" in line and line.split("=", 1)[0].isidentifier() and line.split("=", 1)[0].isupper()
    )


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip() or "(empty)"
    except OSError as e:
        return f"(no log: {e})"


@contextmanager
def bus_without_secret_service(home: Path) -> Iterator[dict[str, str]]:
    """A private session bus on which no Secret Service runs, nor can be activated.

    What an ssh session on a server with dbus but no keyring looks like.
    """
    home = Path(home).absolute()
    run = home / "run"
    for d in (home, run):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(run),
        "LANG": "C.UTF-8",
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={run / 'bus'}",
    }
    bus = _start_bus(home, env)
    try:
        yield env
    finally:
        _terminate(bus)


# -- KeePassXC: the Secret Service of a password manager -------------------------------------------

#: KeePassXC's own settings: Secret Service on, and no dialog when a client reads or deletes an item
#: (a person would answer those; here nobody can). The database is locked only when a test asks.
KEEPASSXC_INI = """[General]
ConfigVersion=2
UpdateCheckMessageShown=true
RememberLastDatabases=false
OpenPreviousDatabasesOnStartup=false

[GUI]
CheckForUpdates=false
ShowTrayIcon=false

[FdoSecrets]
Enabled=true
ShowNotification=false
ConfirmAccessItem=false
ConfirmDeleteItem=false
"""
KEEPASSXC_GROUP = "Secret Service"
_KEEPASSXC_WINDOW = ("--dest=org.keepassxc.KeePassXC.MainWindow", "/keepassxc")


@dataclass
class PrivateKeePassXC(_Daemons):
    """KeePassXC on Xvfb serving a private session bus; ``env`` (without DISPLAY) is for clients."""

    home: Path
    env: dict[str, str]
    database: Path
    display: str
    pid: int
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def lock(self) -> None:
        """Lock the database as KeePassXC's own "Lock databases" does."""
        _run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                *_KEEPASSXC_WINDOW,
                "org.keepassxc.KeePassXC.MainWindow.lockAllDatabases",
            ],
            self.env,
        )
        _wait_for(lambda: is_default_collection_locked(self.env), 10, "KeePassXC did not lock its database")

    def answer_unlock_dialog(self, password: str = DEFAULT_PASSWORD, timeout: float = 20.0) -> None:
        """Type the password into KeePassXC's unlock dialog once it shows, as a person at the screen would."""
        deadline = time.monotonic() + timeout
        while not (dialogs := self._unlock_dialogs()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"KeePassXC showed no unlock dialog within {timeout:.0f} s")
            time.sleep(0.1)
        display = {**self.env, "DISPLAY": self.display}
        _run(["xdotool", "windowfocus", "--sync", dialogs[0]], display)
        _run(["xdotool", "type", "--delay", "10", password], display)
        _run(["xdotool", "key", "Return"], display)
        _wait_for(lambda: not is_default_collection_locked(self.env), 10, "KeePassXC did not unlock its database")

    def unlock(self, password: str = DEFAULT_PASSWORD) -> None:
        """Unlock through a dialog a client left open, else through KeePassXC's own D-Bus interface."""
        if self._unlock_dialogs():
            self.answer_unlock_dialog(password)
            return
        _run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                *_KEEPASSXC_WINDOW,
                "org.keepassxc.KeePassXC.MainWindow.openDatabase",
                f"string:{self.database}",
                f"string:{password}",
            ],
            self.env,
        )
        _wait_for(lambda: not is_default_collection_locked(self.env), 10, "KeePassXC did not unlock its database")

    def _unlock_dialogs(self) -> list[str]:
        """Window ids of the unlock dialogs KeePassXC shows now."""
        found = _run(
            ["xdotool", "search", "--onlyvisible", "--name", "^Unlock Database"],
            {**self.env, "DISPLAY": self.display},
            check=False,
        )
        return found.stdout.split()

    def stop(self) -> None:
        """KeePassXC, then Xvfb, then the bus: by PID, reaped; safe to call repeatedly."""
        while self._procs:
            _terminate(self._procs.pop())

    def revive(self) -> bool:
        """Bus, Xvfb and KeePassXC started again in the same home (same env and bus address) if any of them
        died, on a fresh database; True if it had to."""
        if self.alive():
            return False
        self.stop()
        self.database.unlink(missing_ok=True)
        fresh = start_private_keepassxc(self.home)
        self.database, self.display, self.pid, self._procs = fresh.database, fresh.display, fresh.pid, fresh._procs
        return True

    def log_tail(self) -> str:
        """The end of KeePassXC's log: why it died, for the warning that says so."""
        return _tail(self.home / "keepassxc.log")


def start_private_keepassxc(home: Path, password: str = DEFAULT_PASSWORD, timeout: float = 30.0) -> PrivateKeePassXC:
    """KeePassXC with Secret Service integration, its database open and unlocked, on a private bus.

    The database is made with keepassxc-cli; the exposed group is KeePassXC's
    FDO_SECRETS_EXPOSED_GROUP entry in the database's custom data, which the
    CLI cannot set: so the database is exported to XML, the entry added, and
    imported again. KeePassXC reads the password with --pw-stdin. Returns
    once KeePassXC owns org.freedesktop.secrets, its default collection is
    unlocked and Go's helper completes a store/get/erase round trip.
    """
    home = Path(home).absolute()
    for directory in (home, home / "run", home / "tmp"):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
    }
    # TMPDIR: KeePassXC's single-instance lock and socket live there; another KeePassXC must not answer.
    database = _keepassxc_database(home, env, password)
    settings = home / ".config" / "keepassxc" / "keepassxc.ini"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(KEEPASSXC_INI)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start_bus(home, env))
        env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={home / 'run' / 'bus'}"
        xvfb, display = _start_xvfb(home, env)
        procs.append(xvfb)
        log = home / "keepassxc.log"
        with log.open("wb") as output:
            keepassxc = _popen(
                ["keepassxc", "--pw-stdin", str(database)],
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**env, "DISPLAY": display},
                cwd=home,
            )
        procs.append(keepassxc)
        keepassxc.stdin.write(f"{password}\n".encode())
        keepassxc.stdin.close()
        served = PrivateKeePassXC(home, env, database, display, keepassxc.pid, _procs=procs)
        _wait_for(
            lambda: _served_and_unlocked(env, keepassxc, log),
            timeout,
            f"KeePassXC did not serve an unlocked default collection within {timeout:.0f} s: {_tail(log)}",
        )
        _assert_name_owned_by(env, keepassxc.pid)
        helper_round_trip(env)
        return served
    except BaseException:
        while procs:
            _terminate(procs.pop())
        raise


def _keepassxc_database(home: Path, env: Mapping[str, str], password: str) -> Path:
    """A database whose group KEEPASSXC_GROUP is the one exposed over the Secret Service."""
    draft, export, database = home / "draft.kdbx", home / "draft.xml", home / "secrets.kdbx"
    twice = f"{password}\n{password}\n"
    _run(["keepassxc-cli", "db-create", "-q", "--set-password", "--decryption-time", "100", str(draft)], env, twice)
    _run(["keepassxc-cli", "mkdir", "-q", str(draft), KEEPASSXC_GROUP], env, f"{password}\n")
    xml = _run(["keepassxc-cli", "export", "-q", "--format", "xml", str(draft)], env, f"{password}\n").stdout
    found = re.search(rf"<UUID>([^<]+)</UUID>\s*<Name>{KEEPASSXC_GROUP}</Name>", xml)
    if found is None:
        raise RuntimeError(f"keepassxc-cli export has no group {KEEPASSXC_GROUP!r}")
    group = uuid.UUID(bytes=base64.b64decode(found.group(1)))
    exposed = f"<CustomData><Item><Key>FDO_SECRETS_EXPOSED_GROUP</Key><Value>{{{group}}}</Value></Item></CustomData>"
    export.write_text(xml.replace("</Meta>", exposed + "</Meta>", 1))
    _run(
        ["keepassxc-cli", "import", "-q", "--set-password", "--decryption-time", "100", str(export), str(database)],
        env,
        twice,
    )
    draft.unlink()
    export.unlink()
    return database


def _start_xvfb(home: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen, str]:
    """Xvfb on the first free display; -displayfd reports it once the server is ready."""
    ready_read, ready_write = os.pipe()
    with (home / "xvfb.log").open("wb") as log:
        xvfb = _popen(
            ["Xvfb", "-displayfd", str(ready_write), "-nolisten", "tcp", "-screen", "0", "1280x1024x24"],
            pass_fds=(ready_write,),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=dict(env),
            cwd=home,
        )
    os.close(ready_write)
    with os.fdopen(ready_read, "rb") as ready:
        number = ready.readline().decode().strip()
    if not number.isdigit():
        _terminate(xvfb)
        raise RuntimeError(f"Xvfb did not start: {_tail(home / 'xvfb.log')}")
    return xvfb, f":{number}"


def _served_and_unlocked(env: Mapping[str, str], keepassxc: subprocess.Popen, log: Path) -> bool:
    if keepassxc.poll() is not None:
        raise RuntimeError(f"keepassxc exited with {keepassxc.returncode}: {_tail(log)}")
    locked = _dbus_send(
        env,
        _DEFAULT,
        "org.freedesktop.DBus.Properties.Get",
        "string:org.freedesktop.Secret.Collection",
        "string:Locked",
    )
    return locked.returncode == 0 and "boolean false" in locked.stdout


def _assert_name_owned_by(env: Mapping[str, str], pid: int) -> None:
    owner = _run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetConnectionUnixProcessID",
            "string:org.freedesktop.secrets",
        ],
        env,
    )
    if owner.stdout.split()[-1:] != [str(pid)]:
        raise RuntimeError(f"org.freedesktop.secrets is not owned by pid {pid}: {owner.stdout}")


def _wait_for(condition: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.1)
