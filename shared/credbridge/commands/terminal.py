"""Text from files, made safe to show on a terminal.

Registry names, usernames and helper names come from files anyone may
have edited (docker-config, remote.yaml, registries.conf). Printed raw, a
carriage return and an erase-line sequence forge a table row, OSC 0
rewrites the window title, SGR 8 hides all that follows. Human-readable
output escapes them; `--json` keeps every value exact (JSON escapes them).
"""

from __future__ import annotations

import unicodedata

#: Controls (C0, DEL, C1), format characters (bidi overrides, zero-width), lone surrogates, line separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` with every character a terminal would act on spelled as an escape (\\x1b, \\u202e)."""
    return "".join(_escape(char) if unicodedata.category(char) in _UNPRINTABLE else char for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
