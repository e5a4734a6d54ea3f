"""docker-credential-jwtmint: a token-minting credential helper for tests, shaped like ecr-login.

Run as `jwtmint.py STATE_DIR ACTION`. Each call first appends `ACTION PROFILE` to STATE_DIR/calls
(PROFILE: $AWS_PROFILE, else `default`). `get` and `list` first sleep STATE_DIR/delay seconds if
that file exists; `get` then fails with the text of STATE_DIR/fail if that exists, answers not
found for a registry listed in STATE_DIR/absent, else mints a JWT for PROFILE numbered by the `get`
calls so far that expires STATE_DIR/lifetime seconds from now (600 when absent); with STATE_DIR/shape
`ecr`, an ECR authorization token instead (the base64 JSON document with its `expiration`, user AWS).
`store` and `erase` answer "not implemented", as ecr-login and gcr do; `list` answers {}.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path


def _part(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def _setting(state: Path, name: str) -> str | None:
    path = state / name
    return path.read_text().strip() if path.exists() else None


def main() -> int:
    state, action = Path(sys.argv[1]), sys.argv[2]
    profile = os.environ.get("AWS_PROFILE", "default")
    with open(state / "calls", "a") as calls:
        calls.write(f"{action} {profile}\n")
    if action in ("store", "erase"):
        print("not implemented")
        return 1
    time.sleep(float(_setting(state, "delay") or 0))
    if action == "list":
        print("{}")
        return 0
    registry = sys.stdin.read().strip()
    failure = _setting(state, "fail")
    if failure is not None:
        print(failure)
        return 1
    if registry in (_setting(state, "absent") or "").split():
        print("credentials not found in native keychain")
        return 1
    number = sum(line.startswith("get ") for line in (state / "calls").read_text().splitlines())
    expiry = int(time.time() + float(_setting(state, "lifetime") or 600))
    if _setting(state, "shape") == "ecr":  # as ecr-login answers: the password half of AWS:<password>
        document = {"payload": f"{profile}-{number}", "datakey": "k", "version": "2", "type": "DATA_KEY"}
        token = base64.b64encode(json.dumps({**document, "expiration": expiry}).encode()).decode()
        print(json.dumps({"ServerURL": registry, "Username": "AWS", "Secret": token}))
        return 0
    claims = {"sub": profile, "exp": expiry, "n": number}
    token = ".".join([_part({"alg": "none"}), _part(claims), "unsigned"])
    print(json.dumps({"ServerURL": registry, "Username": "jwt", "Secret": token}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
