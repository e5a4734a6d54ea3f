#!/usr/bin/env python3
"""Whole-process wall time of our helpers against Go's docker-credential-secretservice.

Run from the repository root:

    python3 bench/bench_helpers.py                       # keyring: get + list, 100 items, 31 repetitions
    python3 bench/bench_helpers.py --pattern build       # docker build: one list, then one get per key
    python3 bench/bench_helpers.py --pattern all --repeat 21
    python3 bench/bench_helpers.py --store cryptfile --entries 1000   # the cryptfile, unlocked session
    python3 bench/bench_helpers.py --installed ~/.local/bin   # skip ./install.sh, use these launchers

What one run does: installs credbridge with ./install.sh into a temporary
HOME (unless --installed), starts a private D-Bus session with an unlocked
gnome-keyring (tests/support/keyring_session.py), stores the entries with the
Go helper (so both helpers read the very same items; with --store cryptfile
ours stores the same entries in an unlocked cryptfile), starts `credbridge
agent`, then times each call from spawn to exit. Within one repetition every
contender runs once, in an order rotated from one repetition to the next, so
drift of a shared, noisy machine falls on all of them alike. Everything it
started is stopped at the end, also on Ctrl-C or error.

Standard library only, plus tests.support from this repository.
"""

from __future__ import annotations

import argparse
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

from tests.support.keyring_session import (  # noqa: E402  (needs the repo root on sys.path)
    SECRETSERVICE_HELPER,
    PrivateKeyring,
    delete_all_docker_items,
    start_private_keyring,
)

#: The targets of the performance issue, for the agent path: ours/Go median ratio.
TARGETS = {"get": 1.0, "list": 0.5}
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
        actions = [(os.POSIX_SPAWN_DUP2, stdin_read, 0), (os.POSIX_SPAWN_DUP2, out, 1),
                   (os.POSIX_SPAWN_DUP2, err, 2)]
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        try:
            _pid, status, usage = os.wait4(pid, 0)
        except BaseException:  # Ctrl-C mid-call: the call in flight goes too
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        wall = time.perf_counter() - start
        return Call(wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status),
                    _read_all(out), _read_all(err))
    finally:
        for descriptor in (stdin_read, stdin_write, out, err):
            if descriptor >= 0:
                os.close(descriptor)


def _read_all(descriptor: int) -> bytes:
    os.lseek(descriptor, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(descriptor, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


# -- contenders and statistics ---------------------------------------------------

@dataclass
class Contender:
    name: str  # "go", "agent", "direct", or a reference row
    argv_prefix: list[str]  # the executable; the action is appended
    env: dict[str, str]
    reference: bool = False  # a floor, not a helper: takes no action argument


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p90_ms(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] * 1000
    return statistics.quantiles(values, n=10, method="inclusive")[8] * 1000


def rotated(items: list, shift: int) -> list:
    shift %= len(items)
    return items[shift:] + items[:shift]


# -- the benchmark ------------------------------------------------------------------

class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.root = Path(tempfile.mkdtemp(prefix="cb-bench-"))  # short: gnome-keyring's socket path
        self.keyring: Optional[PrivateKeyring] = None
        self.agent: Optional[subprocess.Popen] = None
        self.bindir: Optional[Path] = None
        self.env: dict[str, str] = {}  # the private keyring's session: Go's environment
        self.ours_env: dict[str, str] = {}  # ours: the same session, plus the cryptfile with --store cryptfile
        self.stored: dict[str, dict[str, str]] = {}  # ServerURL -> credentials in the keyring
        self.lines: list[str] = []  # what is printed, kept for --output

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def note(self, text: str) -> None:
        print(f"# {text}", file=sys.stderr, flush=True)

    # -- set-up ----------------------------------------------------------------

    def install(self) -> None:
        if self.options.installed:
            self.bindir = Path(self.options.installed).expanduser().absolute()
        else:
            home = self.root / "install-home"
            home.mkdir()
            env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            env.update({name: value for name, value in os.environ.items() if name.startswith("PIP_")})
            env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
            self.note(f"installing credbridge with ./install.sh into {home}")
            done = subprocess.run([str(REPO / "install.sh")], env=env, capture_output=True, text=True,
                                  timeout=900, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise RuntimeError(f"install.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
            self.bindir = home / ".local" / "bin"
        for name in (self.ours(), "credbridge"):
            if not os.access(self.bindir / name, os.X_OK):
                raise RuntimeError(f"{self.bindir / name} is not an executable")

    def interpreter(self) -> str:
        """The venv interpreter of our launchers, from their `#!... -IS` line."""
        first = (self.bindir / self.ours()).read_text().splitlines()[0]
        return first[2:].split()[0]

    def start_keyring(self) -> None:
        if not os.access(SECRETSERVICE_HELPER, os.X_OK):
            raise RuntimeError(f"{SECRETSERVICE_HELPER} missing: apt install golang-docker-credential-helpers")
        self.note("starting a private D-Bus session and gnome-keyring")
        self.keyring = start_private_keyring(self.root / "kr")
        self.env = {**self.keyring.env, "PATH": f"{self.bindir}:{self.keyring.env['PATH']}"}
        self.ours_env = dict(self.env)
        if self.options.store == "cryptfile":
            self.ours_env["CREDBRIDGE_CRYPTFILE"] = str(self.root / "cryptfile" / "credentials.cbf")

    def ours(self) -> str:
        return f"docker-credential-{self.options.store}"

    def fresh_cryptfile(self) -> None:
        """An empty cryptfile, unlocked for this session as `credbridge unlock` does it."""
        shutil.rmtree(self.root / "cryptfile", ignore_errors=True)
        unlocked = timed_call([str(self.bindir / "credbridge"), "unlock"], self.ours_env, b"bench passphrase\n")
        if unlocked.returncode != 0:
            raise RuntimeError(f"credbridge unlock failed: {unlocked.stderr!r}")

    def fill(self, count: int) -> None:
        """Exactly `count` docker items, stored by the Go helper."""
        delete_all_docker_items(self.env)
        self.stored = {}
        self.note(f"storing {count} entries with {SECRETSERVICE_HELPER}")
        for index in range(count):
            server = f"registry{index:03d}.bench.example" + (":5000" if index % 4 == 1 else "")
            if index == 0:
                server = "https://index.docker.io/v1/"
            credentials = {"ServerURL": server, "Username": f"user{index:03d}", "Secret": f"secret-{index:03d}-{os.urandom(8).hex()}"}
            call = timed_call([SECRETSERVICE_HELPER, "store"], self.env, json.dumps(credentials).encode())
            if call.returncode != 0:
                raise RuntimeError(f"Go store of {server} failed: {call.stdout!r} {call.stderr!r}")
            self.stored[server] = credentials
        if self.options.store == "cryptfile":
            self.fresh_cryptfile()
            self.note(f"storing the same {count} entries with {self.ours()}")
            for credentials in self.stored.values():
                call = timed_call([str(self.bindir / self.ours()), "store"], self.ours_env, json.dumps(credentials).encode())
                if call.returncode != 0:
                    raise RuntimeError(f"our store of {credentials['ServerURL']} failed: {call.stdout!r} {call.stderr!r}")

    def start_agent(self) -> None:
        """`credbridge agent` in its own session (a Ctrl-C of ours must not race our teardown)."""
        socket_dir = Path(self.env["XDG_RUNTIME_DIR"]) / "credbridge"
        self.agent = subprocess.Popen([str(self.bindir / "credbridge"), "agent"], env=self.env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + AGENT_START_TIMEOUT_SECONDS
        while not list(socket_dir.glob("agent-*.sock")):
            if self.agent.poll() is not None:
                raise RuntimeError(f"credbridge agent exited at start with {self.agent.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("credbridge agent did not create its socket")
            time.sleep(0.02)
        self.note(f"credbridge agent pid {self.agent.pid} is listening")

    def check_agent(self) -> None:
        """The agent rows are only worth something while the agent serves them."""
        if self.agent is None or self.agent.poll() is not None:
            raise RuntimeError("credbridge agent died during the benchmark: agent rows would be direct calls")
        if not list((Path(self.env["XDG_RUNTIME_DIR"]) / "credbridge").glob("agent-*.sock")):
            raise RuntimeError("credbridge agent's socket vanished during the benchmark")

    def contenders(self, modes: list[str], references: bool) -> list[Contender]:
        ours = str(self.bindir / self.ours())
        table = {
            "go": Contender("go", [SECRETSERVICE_HELPER], self.env),
            # Never start an agent of its own: if ours died, check_agent() says so instead.
            "agent": Contender("agent", [ours], {**self.ours_env, "CREDBRIDGE_NO_AGENT_START": "1"}),
            "direct": Contender("direct", [ours], {**self.ours_env, "CREDBRIDGE_NO_AGENT": "1"}),
        }
        chosen = [table[mode] for mode in modes]
        if references:
            chosen += [
                Contender("floor: venv python -I -S -c pass", [self.interpreter(), "-I", "-S", "-c", "pass"], self.env, True),
                Contender("spawn: /bin/true", ["/bin/true"], self.env, True),
            ]
        return chosen

    # -- checking answers --------------------------------------------------------

    def get_target(self) -> str:
        servers = list(self.stored)
        return servers[len(servers) // 2]

    def expected_get(self, server: str) -> bytes:
        return (json.dumps(self.stored[server], separators=(",", ":")) + "\n").encode()

    def verify(self, contender: Contender, action: str, call: Call, stdin: bytes) -> None:
        where = f"{contender.name} {action}"
        if call.returncode != 0:
            raise RuntimeError(f"{where} exited {call.returncode}: stdout={call.stdout[:500]!r} stderr={call.stderr[:500]!r}")
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
                raise RuntimeError(f"{where}: {len(listed)} keys, expected {len(expected)}; missing {missing}, extra {extra}")

    # -- pattern: single calls -----------------------------------------------------

    def run_calls(self) -> dict[tuple[str, str], Samples]:
        options = self.options
        contenders = self.contenders(options.modes, references=not options.no_floor)
        server = self.get_target()
        jobs: list[tuple[Contender, str, bytes]] = []
        for action in ("get", "list"):
            stdin = server.encode() if action == "get" else b"unused"  # docker CLI sends `unused` to list
            jobs += [(contender, action, stdin) for contender in contenders if not contender.reference]
        jobs += [(contender, "-", b"") for contender in contenders if contender.reference]
        self.note(f"calls: {len(jobs)} contenders x ({options.warmup} warm-up + {options.repeat}) repetitions, get of {server}")
        results = {(c.name, action): Samples() for c, action, _ in jobs}
        for repetition in range(-options.warmup, options.repeat):
            for contender, action, stdin in rotated(jobs, repetition):
                argv = contender.argv_prefix + ([] if contender.reference else [action])
                call = timed_call(argv, contender.env, stdin)
                if repetition < 0 or call.returncode != 0:
                    self.verify(contender, action, call, stdin)
                if repetition >= 0:
                    results[(contender.name, action)].add(call.wall, call.cpu)
            if "agent" in options.modes:
                self.check_agent()
            if repetition >= 0 and (repetition + 1) % 10 == 0:
                self.note(f"calls: {repetition + 1}/{options.repeat} repetitions")
        return results

    def report_calls(self, results: dict[tuple[str, str], Samples]) -> None:
        self.say(f"Single calls: {len(self.stored)} items in each store, {self.options.repeat} interleaved repetitions "
                 f"after {self.options.warmup} warm-up; whole process, spawn to exit")
        self.say()
        header = f"| {'action':<6} | {'contender':<32} | {'median ms':>9} | {'p90 ms':>7} | {'cpu ms':>6} | {'ours/Go':>7} | {'target':>6} | {'verdict':<7} |"
        self.say(header)
        self.say(f"|{'-' * 8}|{'-' * 34}|{'-' * 10}:|{'-' * 8}:|{'-' * 7}:|{'-' * 8}:|{'-' * 7}:|{'-' * 9}|")
        verdicts = []
        for action in ("get", "list", "-"):
            go = results.get(("go", action))
            rank = {"go": 0, "agent": 1, "direct": 2}  # Go first, whatever --modes said; floors last
            for name, row_action in sorted(results, key=lambda key: rank.get(key[0], 3)):
                if row_action != action:
                    continue
                samples = results[(name, row_action)]
                ratio = target = verdict = ""
                if go is not None and name in ("agent", "direct"):
                    value = median_ms(samples.wall) / median_ms(go.wall)
                    ratio = f"{value:.2f}"
                    if name == "agent":
                        target = f"<= {TARGETS[action]:.1f}"
                        verdict = "MET" if value <= TARGETS[action] else "NOT MET"
                        verdicts.append(f"{action} (agent) ours/Go = {value:.2f}, target <= {TARGETS[action]:.1f}: {verdict}")
                label = {"go": "Go secretservice", "agent": "ours, agent", "direct": "ours, CREDBRIDGE_NO_AGENT=1"}.get(name, name)
                self.say(f"| {action:<6} | {label:<32} | {median_ms(samples.wall):>9.1f} | {p90_ms(samples.wall):>7.1f} | "
                         f"{median_ms(samples.cpu):>6.1f} | {ratio:>7} | {target:>6} | {verdict:<7} |")
        self.say()
        for line in verdicts:
            self.say(f"- {line}")
        self.say()

    # -- pattern: docker build -------------------------------------------------------

    def build_round(self, contender: Contender) -> float:
        """One `list`, then one `get` per listed key, as classic `docker build` does; wall seconds."""
        start = time.perf_counter()
        listed = timed_call(contender.argv_prefix + ["list"], contender.env, b"unused")
        self.verify(contender, "list", listed, b"unused")
        for server in json.loads(listed.stdout):
            got = timed_call(contender.argv_prefix + ["get"], contender.env, server.encode())
            if got.returncode != 0:
                self.verify(contender, "get", got, server.encode())
        return time.perf_counter() - start

    def run_build(self) -> dict[str, list[float]]:
        options = self.options
        contenders = [c for c in self.contenders(options.build_modes, references=False)]
        self.note(f"build: {len(contenders)} contenders x ({options.build_warmup} warm-up + {options.build_repeat}) "
                  f"rounds of 1 list + {len(self.stored)} gets")
        # The warm-up round also checks every answer once.
        for contender in contenders:
            for _ in range(options.build_warmup):
                listed = timed_call(contender.argv_prefix + ["list"], contender.env, b"unused")
                self.verify(contender, "list", listed, b"unused")
                for server in json.loads(listed.stdout):
                    self.verify(contender, "get", timed_call(contender.argv_prefix + ["get"], contender.env, server.encode()), server.encode())
        results: dict[str, list[float]] = {c.name: [] for c in contenders}
        for repetition in range(options.build_repeat):
            for contender in rotated(contenders, repetition):
                results[contender.name].append(self.build_round(contender))
            if "agent" in options.build_modes:
                self.check_agent()
        return results

    def report_build(self, results: dict[str, list[float]]) -> None:
        self.say(f"docker build pattern: 1 list + {len(self.stored)} gets ({len(self.stored)} registries), "
                 f"{self.options.build_repeat} interleaved rounds after {self.options.build_warmup} warm-up")
        self.say()
        self.say(f"| {'contender':<32} | {'median ms':>9} | {'p90 ms':>7} | {'per call ms':>11} | {'ours/Go':>7} |")
        self.say(f"|{'-' * 34}|{'-' * 10}:|{'-' * 8}:|{'-' * 12}:|{'-' * 8}:|")
        go = results.get("go")
        calls = len(self.stored) + 1
        for name, walls in sorted(results.items(), key=lambda item: ("go", "agent", "direct").index(item[0])):
            ratio = f"{median_ms(walls) / median_ms(go):.2f}" if go and name != "go" else ""
            label = {"go": "Go secretservice", "agent": "ours, agent", "direct": "ours, CREDBRIDGE_NO_AGENT=1"}[name]
            self.say(f"| {label:<32} | {median_ms(walls):>9.0f} | {p90_ms(walls):>7.0f} | {median_ms(walls) / calls:>11.1f} | {ratio:>7} |")
        self.say()

    # -- teardown --------------------------------------------------------------------

    def teardown(self) -> None:
        if self.agent is not None:
            if self.agent.poll() is None:
                self.agent.send_signal(signal.SIGTERM)
                try:
                    self.agent.wait(10)
                except subprocess.TimeoutExpired:
                    self.agent.kill()
                    self.agent.wait()
            self.agent = None
        if self.keyring is not None:
            self.keyring.stop()
            self.keyring = None
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
        self.say(f"credbridge {self.options.store} benchmark, {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
        self.say(f"machine: {platform.node() or '?'}, nproc {os.cpu_count()}, {platform.machine()}, "
                 f"Linux {platform.release()}; harness Python {platform.python_version()}; "
                 f"our launchers' interpreter {os.path.realpath(self.interpreter())}")
        load = os.getloadavg()
        self.say(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        self.say(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        self.say()

    def run(self) -> None:
        self.install()
        self.start_keyring()
        self.header()
        wants_agent = (self.options.pattern in ("calls", "all") and "agent" in self.options.modes) or \
                      (self.options.pattern in ("build", "all") and "agent" in self.options.build_modes)
        if wants_agent:
            self.start_agent()
        if self.options.pattern in ("calls", "all"):
            self.fill(self.options.entries)
            self.report_calls(self.run_calls())
        if self.options.pattern in ("build", "all"):
            self.fill(self.options.registries)
            self.report_build(self.run_build())
        if self.options.output:
            Path(self.options.output).write_text("\n".join(self.lines) + "\n")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("keyring", "cryptfile"), default="keyring",
                        help="our helper to time against Go's secretservice (default keyring)")
    parser.add_argument("--pattern", choices=("calls", "build", "all"), default="calls",
                        help="calls: single get and list (default); build: docker build's list + one get per key; all: both")
    parser.add_argument("--entries", type=int, default=100, help="entries in each store for single calls (default 100)")
    parser.add_argument("--repeat", type=int, default=31, help="timed repetitions of single calls (default 31)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions first; they also check every answer (default 3)")
    parser.add_argument("--modes", default="go,agent,direct", help="contenders for single calls (default go,agent,direct)")
    parser.add_argument("--no-floor", action="store_true", help="leave out the reference rows (bare interpreter, /bin/true)")
    parser.add_argument("--registries", type=int, default=50, help="items in the keyring for --pattern build (default 50)")
    parser.add_argument("--build-repeat", type=int, default=11, help="timed rounds of the build pattern (default 11)")
    parser.add_argument("--build-warmup", type=int, default=1, help="untimed, checked rounds of the build pattern (default 1)")
    parser.add_argument("--build-modes", default="go,agent", help="contenders for the build pattern (default go,agent)")
    parser.add_argument("--installed", metavar="BINDIR", help="use the launchers in BINDIR instead of running ./install.sh")
    parser.add_argument("--output", metavar="FILE", help="also write the printed report to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs) after the run")
    options = parser.parse_args(argv)
    for name in ("modes", "build_modes"):
        modes = [mode.strip() for mode in getattr(options, name).split(",") if mode.strip()]
        unknown = set(modes) - {"go", "agent", "direct"}
        if unknown or not modes:
            parser.error(f"--{name.replace('_', '-')}: choose among go, agent, direct (got {sorted(unknown) or 'nothing'})")
        setattr(options, name, modes)
    if options.entries < 1 or options.registries < 1 or options.repeat < 1 or options.build_repeat < 1:
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
