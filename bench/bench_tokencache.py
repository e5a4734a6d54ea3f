#!/usr/bin/env python3
"""The docker build pattern over ECR registries: ecr-login routed by credbridge, against ecr-login.

Run from the repository root with the test venv's interpreter (it has moto):

    .venv/bin/python bench/bench_tokencache.py                 # 50 registries, 1 warm-up + 7 rounds
    .venv/bin/python bench/bench_tokencache.py --registries 20 --repeat 3 --installed ~/.local/bin

Debian's docker-credential-ecr-login mints its tokens from moto on loopback
(tests/support/aws.py: a TLS-terminating proxy in this process counts every
GetAuthorizationToken). One round is one `list` and one `get` per registry,
each a whole process timed from spawn to exit (bench_helpers.timed_call), as
classic `docker build` asks; contenders alternate from round to round. The
router routes `*.dkr.ecr.*.amazonaws.com` to ecr-login with `ttl: 3600` (moto's
tokens carry no expiry), served by a `credbridge agent` started beforehand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_helpers import median_ms, p90_ms, rotated, timed_call  # noqa: E402

from tests.support.aws import REGION, registry_host, start_ecr_emulation  # noqa: E402

ECR_LOGIN = "/usr/bin/docker-credential-ecr-login"
RATIO_TARGET = 0.1


def install(home: Path) -> Path:
    home.mkdir()
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **{name: value for name, value in os.environ.items() if name.startswith("PIP_")},
    }
    subprocess.run([str(REPO / "install.sh")], env=env, check=True, capture_output=True, timeout=900)
    return home / ".local" / "bin"


def build_round(argv: list[str], env: dict[str, str], registries: list[str]) -> float:
    """One `list`, then one `get` per registry; wall seconds. A failed call stops the run."""
    start = time.perf_counter()
    calls = [(["list"], b"unused")] + [(["get"], registry.encode()) for registry in registries]
    for action, stdin in calls:
        call = timed_call(argv + action, env, stdin)
        if call.returncode != 0:
            raise RuntimeError(f"{argv[0]} {action[0]} {stdin.decode()} failed: {call.stdout[:200]!r}")
        if action == ["get"] and json.loads(call.stdout)["Username"] != "AWS":
            raise RuntimeError(f"{argv[0]} get {stdin.decode()} answered no ECR login")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registries", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--installed", help="a bin directory with credbridge's launchers (default: ./install.sh)")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-tokencache-"))
    emulation = start_ecr_emulation(root / "ecr")
    agent = None
    try:
        bindir = Path(options.installed) if options.installed else install(root / "install-home")
        registries = [registry_host(f"{100000000000 + number}", REGION) for number in range(options.registries)]
        runtime, config_home = root / "run", root / "config"
        runtime.mkdir(mode=0o700)
        (config_home / "credbridge").mkdir(parents=True, mode=0o700)
        (config_home / "credbridge" / "config.yaml").write_text(
            'primary: cryptfile\nroutes:\n  "*.dkr.ecr.*.amazonaws.com": {store: ecr-login, ttl: 3600}\n'
        )
        routed_env = {
            **emulation.env(),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(config_home),
            "PATH": f"{bindir}:/usr/bin:/bin",
            "CREDBRIDGE_NO_AGENT_START": "1",
        }
        agent = subprocess.Popen(
            [str(bindir / "credbridge"), "agent"],
            env=routed_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not list((runtime / "credbridge").glob("agent-*.sock")):
            if time.monotonic() > deadline or agent.poll() is not None:
                raise RuntimeError("credbridge agent did not start")
            time.sleep(0.05)
        router = str(bindir / "docker-credential-credbridge")
        contenders = {
            "ecr-login, direct": ([ECR_LOGIN], emulation.env()),
            "ecr-login routed, agent": ([router], routed_env),
        }
        for argv, env in contenders.values():  # warm-up: the agent's cache fills, ecr-login's too
            build_round(argv, env, registries)
        warm_calls = emulation.token_calls()
        walls: dict[str, list[float]] = {label: [] for label in contenders}
        calls: dict[str, int] = dict.fromkeys(contenders, 0)
        for repetition in range(options.repeat):
            for label in rotated(list(contenders), repetition):
                before = emulation.token_calls()
                walls[label].append(build_round(*contenders[label], registries))
                calls[label] += emulation.token_calls() - before
        direct = median_ms(walls["ecr-login, direct"])
        print(
            f"docker build pattern: 1 list + {len(registries)} gets over {len(registries)} ECR "
            f"registries, {options.repeat} interleaved rounds after 1 warm-up "
            f"({warm_calls} token calls in the warm-up)\n"
        )
        print(
            f"| {'contender':<24} | {'median ms':>9} | {'p90 ms':>7} | {'per call ms':>11} | "
            f"{'AWS calls/round':>15} | {'ratio':>5} |"
        )
        print(f"|{'-' * 26}|{'-' * 10}:|{'-' * 8}:|{'-' * 12}:|{'-' * 16}:|{'-' * 6}:|")
        for label, samples in walls.items():
            ratio = median_ms(samples) / direct
            print(
                f"| {label:<24} | {median_ms(samples):>9.0f} | {p90_ms(samples):>7.0f} | "
                f"{median_ms(samples) / (len(registries) + 1):>11.1f} | "
                f"{calls[label] / options.repeat:>15.1f} | "
                f"{ratio:>5.2f} |"
            )
        ratio = median_ms(walls["ecr-login routed, agent"]) / direct
        verdict = "MET" if ratio <= RATIO_TARGET else "NOT MET"
        print(
            f"\nrouted/direct = {ratio:.3f}, target <= {RATIO_TARGET}: {verdict}"
            f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        return 0
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
        emulation.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
