"""One top-level key of a TOML file, changed by editing that key's own lines and nothing else.

The rest of the file is the user's and the system's, so no TOML writer re-serialises it; each
result is parsed again and checked (docs/design.md, "Files").
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from credbridge.errors import HelperError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI, before Python 3.11
    import tomli as tomllib


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


#: The value of a key the file does not set.
ABSENT: Any = _Absent()


def parse(text: str, path: str) -> dict[str, Any]:
    """The document; a file that is not TOML is an error naming it."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise HelperError(f"{path} is not valid TOML ({error}): fix it, then run again") from None


def value_of(text: str, key: str, path: str) -> Any:
    return parse(text, path).get(key, ABSENT)


def with_value(text: str, key: str, value: Any, path: str) -> str:
    """`text` with top-level `key` set to `value` (ABSENT: removed), every other byte kept."""
    document = parse(text, path)
    if document.get(key, ABSENT) == value:
        return text
    wanted = {name: item for name, item in document.items() if name != key}
    if value is not ABSENT:
        wanted[key] = value
    for candidate in _candidates(text, key, value):
        try:
            if tomllib.loads(candidate) == wanted:
                return candidate
        except tomllib.TOMLDecodeError:
            continue
    shown = "remove it" if value is ABSENT else f"set it first in the file: {_assignment(key, value).strip()}"
    raise HelperError(f"cannot change {key} in {path} without touching other settings: {shown}")


def _candidates(text: str, key: str, value: Any) -> list[str]:
    """Edits to try, most likely first: replace (or drop) the key's lines where it is set, else add it first."""
    lines = text.splitlines(keepends=True)
    starts = re.compile(rf"""[ \t]*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')[ \t]*=""")
    found = []
    for first, line in enumerate(lines):
        if not starts.match(line):
            continue
        end = _value_end(lines, first, key)
        if end is None:
            continue
        ending = lines[end - 1][len(lines[end - 1].rstrip("\r\n")) :]
        replacement = "" if value is ABSENT else _assignment(key, value, ending or "")
        found.append("".join(lines[:first]) + replacement + "".join(lines[end:]))
    if value is not ABSENT:
        newline = "\r\n" if text.endswith("\r\n") else "\n"
        found.append(_assignment(key, value, newline) + text)
    return found


def _value_end(lines: list[str], first: int, key: str) -> int | None:
    """The end (exclusive) of the fewest lines from `first` that parse as just this key: its whole value."""
    for end in range(first + 1, len(lines) + 1):
        try:
            if set(tomllib.loads("".join(lines[first:end]))) == {key}:
                return end
        except tomllib.TOMLDecodeError:
            continue
    return None


def _assignment(key: str, value: Any, newline: str = "\n") -> str:
    """`key = value` for a string or a list of strings (all credbridge writes), as TOML basic strings."""
    if isinstance(value, str):
        rendered = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        rendered = "[" + ", ".join(json.dumps(item, ensure_ascii=False) for item in value) + "]"
    else:
        raise HelperError(f"cannot write {key} = {value!r}: only strings and lists of strings are supported")
    return f"{key} = {rendered}{newline}"
