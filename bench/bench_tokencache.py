#!/usr/bin/env python3
"""The docker build pattern over ECR registries: ecr-login routed by credbridge, against ecr-login.

Run from the repository root with the test venv's interpreter (it has moto):

    .venv/bin/python bench/bench_tokencache.py                      # 50 registries, 1 warm-up + 7 rounds
    .venv/bin/python bench/bench_tokencache.py --aws-rtt-ms 100     # AWS behind an emulated network
    .venv/bin/python bench/bench_tokencache.py --registries 20 --repeat 3 --installed ~/.local/bin

Debian's docker-credential-ecr-login mints its tokens from moto on loopback
(tests/support/aws.py: a TLS-terminating proxy in this process counts every
GetAuthorizationToken, makes each token expire in 12 hours as real ECR's do,
and with --aws-rtt-ms holds each request that long before moto sees it: an
emulated network round trip, which loopback lacks). One round is one `list`
and one `get` per registry, each a whole process timed from spawn to exit
(bench_helpers.timed_call), as classic `docker build` asks; contenders
alternate from round to round. Contenders: ecr-login with its own cache
(plaintext JSON in AWS_ECR_CACHE_DIR, ~/.ecr by default), ecr-login with
AWS_ECR_DISABLE_CACHE=1 (no file, but its `list` then names no registry),
and the router (`*.dkr.ecr.*.amazonaws.com` to ecr-login, `ttl: 3600`) served
by a `credbridge agent` started beforehand, as a user has it: the caller sets
no AWS_ECR_* variable, and the agent gives ecr-login a private directory of
its own for its file. Every file of the run is searched afterwards for a token.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_helpers import median_ms, p90_ms, rotated, timed_call  # noqa: E402

from tests.support.aws import REGION, EcrEmulation, registry_host, start_ecr_emulation  # noqa: E402

ECR_LOGIN = "/usr/bin/docker-credential-ecr-login"
RATIO_TARGET = 0.1
#: What real ECR answers: an authorization token is valid for 12 hours.
TOKEN_LIFETIME_SECONDS = 12 * 3600
FILE_CACHE = "ecr-login, file cache"
NO_CACHE = "ecr-login, DISABLE_CACHE"
ROUTED = "routed through the agent"


class Contender(NamedTuple):
    argv: list[str]
    env: dict[str, str]
    ecr_cache: Path  # where ecr-login keeps its file for it


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


def aws_calls(emulation: EcrEmulation) -> int:
    """Requests that reached the emulated AWS: ECR's GetAuthorizationToken and ECR Public's (`list`)."""
    return emulation.token_calls() + emulation.public_calls()


def token_marks(registries: list[str]) -> list[bytes]:
    """What moto mints for each registry, as ecr-login answers it and as its cache.json keeps it (base64)."""
    passwords = [f"{registry.partition('.')[0]}-auth-token".encode() for registry in registries]
    return passwords + [base64.b64encode(b"AWS:" + password) for password in passwords]


def files_holding_a_token(directory: Path, marks: list[bytes]) -> list[str]:
    """Files under `directory` that hold a token in plaintext (ecr-login's cache.json, or anything else)."""
    if not directory.exists():
        return []
    found = [
        path for path in directory.rglob("*") if path.is_file() and any(mark in path.read_bytes() for mark in marks)
    ]
    return sorted(str(path.relative_to(directory)) for path in found)


def start_agent(bindir: Path, env: dict[str, str], runtime: Path) -> subprocess.Popen:
    agent = subprocess.Popen(
        [str(bindir / "credbridge"), "agent"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not list((runtime / "credbridge").glob("agent-*.sock")):
        if time.monotonic() > deadline or agent.poll() is not None:
            raise RuntimeError("credbridge agent did not start")
        time.sleep(0.05)
    return agent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registries", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--aws-rtt-ms",
        type=float,
        default=0.0,
        help="emulated network round trip: each request to the emulated AWS waits this long (default 0: loopback)",
    )
    parser.add_argument("--installed", help="a bin directory with credbridge's launchers (default: ./install.sh)")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-tokencache-"))
    emulation = start_ecr_emulation(root / "ecr", options.aws_rtt_ms / 1000, TOKEN_LIFETIME_SECONDS)
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
        agent = start_agent(bindir, routed_env, runtime)
        router = str(bindir / "docker-credential-credbridge")

        direct_file, direct_none = root / "ecr-caches" / "direct-file", root / "ecr-caches" / "direct-none"
        contenders = {
            FILE_CACHE: Contender([ECR_LOGIN], {**emulation.env(), "AWS_ECR_CACHE_DIR": str(direct_file)}, direct_file),
            NO_CACHE: Contender(
                [ECR_LOGIN],
                {**emulation.env(), "AWS_ECR_CACHE_DIR": str(direct_none), "AWS_ECR_DISABLE_CACHE": "1"},
                direct_none,
            ),
            ROUTED: Contender([router], routed_env, runtime),  # the agent's own directory for ecr-login's file
        }
        for chosen in contenders.values():  # warm-up: the agent's cache fills, ecr-login's file too
            build_round(chosen.argv, chosen.env, registries)
        warm_calls = aws_calls(emulation)
        walls: dict[str, list[float]] = {label: [] for label in contenders}
        calls: dict[str, int] = dict.fromkeys(contenders, 0)
        for repetition in range(options.repeat):
            for label in rotated(list(contenders), repetition):
                before = aws_calls(emulation)
                walls[label].append(build_round(contenders[label].argv, contenders[label].env, registries))
                calls[label] += aws_calls(emulation) - before
        report(options, registries, warm_calls, contenders, walls, calls)
        places = {contender.ecr_cache for contender in contenders.values()}
        elsewhere = [
            path
            for path in files_holding_a_token(root, token_marks(registries))
            if not any((root / path).is_relative_to(place) for place in places)
        ]
        print(f"\nany other file of the run (HOME, ~/.ecr, state, logs, config) holding a token: {elsewhere or 'none'}")
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        left = files_holding_a_token(runtime, token_marks(registries))
        print(f"in the agent's directory after its exit: {left or 'none'}")
        return 0
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
        emulation.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(
    options: argparse.Namespace,
    registries: list[str],
    warm_calls: int,
    contenders: dict[str, Contender],
    walls: dict[str, list[float]],
    calls: dict[str, int],
) -> None:
    network = (
        f"EMULATED network round trip: each AWS request held {options.aws_rtt_ms:g} ms by the proxy"
        if options.aws_rtt_ms
        else "AWS on loopback, no network round trip added"
    )
    print(
        f"docker build pattern: 1 list + {len(registries)} gets over {len(registries)} ECR registries, "
        f"{options.repeat} interleaved rounds after 1 warm-up ({warm_calls} AWS calls in the warm-up)\n{network}\n"
    )
    print(
        f"| {'contender':<24} | {'median ms':>9} | {'p90 ms':>7} | {'round/51 ms':>11} | "
        f"{'AWS calls/round':>15} | {'token on disk':<31} |"
    )
    print(f"|{'-' * 26}|{'-' * 10}:|{'-' * 8}:|{'-' * 12}:|{'-' * 16}:|{'-' * 33}|")
    for label, samples in walls.items():
        on_disk = files_holding_a_token(contenders[label].ecr_cache, token_marks(registries))
        where = "agent's dir" if label == ROUTED else "its dir"
        disk = f"yes ({where}: {', '.join(path.rpartition('/')[2] for path in on_disk)})" if on_disk else "no"
        print(
            f"| {label:<24} | {median_ms(samples):>9.0f} | {p90_ms(samples):>7.0f} | "
            f"{median_ms(samples) / (len(registries) + 1):>11.1f} | "
            f"{calls[label] / options.repeat:>15.1f} | {disk:<31} |"
        )
    print()
    for direct in (FILE_CACHE, NO_CACHE):
        ratio = median_ms(walls[ROUTED]) / median_ms(walls[direct])
        verdict = "MET" if ratio <= RATIO_TARGET else "NOT MET"
        print(f"- ({ROUTED}) / ({direct}) = {ratio:.3f}, target <= {RATIO_TARGET}: {verdict}")
    print(f"\nload average {'/'.join(f'{load:.1f}' for load in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    sys.exit(main())
