"""`credbridge audit`: the audit log (credbridge.audit) as a table or JSON, filtered.

Answers "which program took which credential, and when": newest record
last, like a log. A line that is not a record (a torn disk block, a hand
edit) is skipped, never fatal: the rest of the log still answers.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Mapping, NamedTuple, Optional

from credbridge import audit
from credbridge.commands.terminal import printable
from credbridge.errors import HelperError
from credbridge.files import atomicfile, config

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
COLUMNS = (
    ("TIME", "time"),
    ("TOOL", "tool"),
    ("PID", "tool_pid"),
    ("ACTION", "action"),
    ("REGISTRY", "registry"),
    ("STORE", "store"),
    ("OUTCOME", "outcome"),
    ("VIA", "served_by"),
)


class Filters(NamedTuple):
    since: Optional[float] = None  # epoch seconds
    registry: Optional[str] = None
    tool: Optional[str] = None


def since_seconds(text: str) -> float:
    """`90s`, `30m`, `1h`, `2d`, `1w` (a bare number is seconds) as a number of seconds."""
    found = _SPAN.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a span of time: write it as 30m, 1h, 2d or 1w")
    return float(found[1]) * _SECONDS[found[2]]


def records(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every record of the log and its rotated files, oldest first."""
    found = []
    for path in audit.log_files(env):
        content = atomicfile.read(path)
        if content is None:
            continue
        for line in content[0].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("time"), (int, float)):
                found.append(record)
    return sorted(found, key=lambda record: record["time"])


def matching(found: list[dict[str, Any]], filters: Filters) -> list[dict[str, Any]]:
    wanted_registry = audit.registry_name(filters.registry) if filters.registry else None
    return [
        record
        for record in found
        if (filters.since is None or record["time"] >= filters.since)
        and (wanted_registry is None or _same_registry(record, wanted_registry))
        and (filters.tool is None or _is_tool(record, filters.tool))
    ]


def _same_registry(record: dict[str, Any], wanted: str) -> bool:
    """The registry itself, a path below it (`ghcr.io` finds `ghcr.io/org`), or its hidden name."""
    recorded = str(record.get("registry", ""))
    return recorded in (wanted, audit.hidden_name(wanted)) or recorded.startswith(wanted + "/")


def _is_tool(record: dict[str, Any], tool: str) -> bool:
    """`docker` finds a tool by its name, argv[0] or executable (`/usr/bin/docker`)."""
    name = str(record.get("tool", ""))
    paths = (str(record.get("tool_argv0", "")), str(record.get("tool_exe", "")))
    return tool in {name, name.split(" ")[0], *(os.path.basename(path) for path in paths)}


def render(shown: list[dict[str, Any]], total: int, as_json: bool, env: Mapping[str, str]) -> str:
    """`total`: the records before filtering (an empty log, or filters that match nothing)."""
    if as_json:
        return json.dumps(shown, indent=2)
    off = f"the audit log is off (`audit: false` in {config.config_path(env)}): remove that line"
    notes = [] if audit.enabled(env) else [off]
    if not shown:
        empty = (
            f"no audit records match: `credbridge audit` without filters shows all {total}"
            if total
            else f"no audit records in {audit.log_path(env)} yet: each get, store, "
            "erase and list a credbridge helper serves adds one"
        )
        return "\n".join([empty, *notes])
    rows = [tuple(title for title, _ in COLUMNS)]
    rows += [tuple(_cell(record, key) for _, key in COLUMNS) for record in shown]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS) - 1)]
    lines = ["  ".join([*(f"{cell:<{width}}" for cell, width in zip(row, widths)), row[-1]]) for row in rows]
    return "\n".join([*lines, *notes])


def _cell(record: dict[str, Any], key: str) -> str:
    value = record.get(key, "")
    if key == "time":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(value)))
    return printable(str(value)) or "-"


def show(env: Mapping[str, str], filters: Filters, as_json: bool) -> str:
    try:
        found = records(env)
        return render(matching(found, filters), len(found), as_json, env)
    except OSError as error:
        why = error.strerror or error
        raise HelperError(f"cannot read the audit log {audit.log_path(env)}: {why}") from None
