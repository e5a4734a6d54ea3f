"""Text from files, made safe to show on a terminal.

Names from files anyone may have edited could forge rows or hide output with control sequences:
human-readable output escapes them, `--json` keeps values exact (docs/trust.md).
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
