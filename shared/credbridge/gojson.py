"""Go encoding/json compatibility for the helper protocol's two message shapes.

Clients and scripts compare the Go helpers' bytes, so output is encoded and input decoded exactly
as Go does for the Credentials struct, with Go's error texts (docs/protocol.md section 1).
"""

from __future__ import annotations

import json
import re

from credbridge.errors import HelperError

CREDENTIAL_FIELDS = ("ServerURL", "Username", "Secret")

# Go 1.19 (the reference build) writes \n \r \t short, every other control
# character as \u00XX, and escapes <, >, &, U+2028, U+2029 for HTML safety.
_ESCAPES = {c: f"\\u{c:04x}" for c in range(0x20)}
_ESCAPES.update(
    {
        ord("\n"): "\\n",
        ord("\r"): "\\r",
        ord("\t"): "\\t",
        ord('"'): '\\"',
        ord("\\"): "\\\\",
        ord("<"): "\\u003c",
        ord(">"): "\\u003e",
        ord("&"): "\\u0026",
        0x2028: "\\u2028",
        0x2029: "\\u2029",
    }
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_SPACE = " \t\n\r"
_FIELD_BY_FOLDED_NAME = {name.casefold(): name for name in CREDENTIAL_FIELDS}


def encode_string(value: str) -> str:
    """A JSON string literal, byte-identical to Go's json.Marshal."""
    return '"' + _LONE_SURROGATE.sub("\ufffd", value).translate(_ESCAPES) + '"'


def encode_credentials(server_url: str, username: str, secret: str) -> bytes:
    """The `get` reply: Go's struct field order, newline-terminated."""
    return (
        f'{{"ServerURL":{encode_string(server_url)},'
        f'"Username":{encode_string(username)},'
        f'"Secret":{encode_string(secret)}}}\n'
    ).encode()


def encode_string_map(mapping: dict[str, str]) -> bytes:
    """The `list` reply: a Go map[string]string, keys sorted, newline-terminated."""
    items = ",".join(f"{encode_string(key)}:{encode_string(mapping[key])}" for key in sorted(mapping))
    return ("{" + items + "}\n").encode()


def decode_credentials(text: str) -> dict[str, str]:
    """Decode a `store` message the way Go's json.Decoder fills Credentials.

    Returns the three fields (absent or null ones as ""). Raises HelperError
    with Go's message on a syntax or type error.
    """
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    if start == len(text):
        raise HelperError("EOF")
    try:
        value, _end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as error:
        raise HelperError(_go_syntax_error(error)) from None
    except RecursionError:
        raise HelperError("exceeded max depth") from None
    fields = dict.fromkeys(CREDENTIAL_FIELDS, "")
    if value is None:
        return fields
    if not isinstance(value, list) or not value or value[0] is not _OBJECT:
        raise HelperError(f"json: cannot unmarshal {_go_kind(value)} into Go value of type credentials.Credentials")
    first_type_error = None
    for key, item in value[1:]:
        field = _FIELD_BY_FOLDED_NAME.get(key.casefold())
        if field is None or item is None:
            continue
        if isinstance(item, str):
            fields[field] = _LONE_SURROGATE.sub("\ufffd", item)
        elif first_type_error is None:
            first_type_error = (
                f"json: cannot unmarshal {_go_kind(item)} into Go struct field Credentials.{field} of type string"
            )
    if first_type_error:
        raise HelperError(first_type_error)
    return fields


# Objects are decoded as [_OBJECT, (key, value), ...] so that key order and
# duplicate keys survive, as Go sees them.
_OBJECT = object()


def _reject_constant(name: str) -> None:
    raise json.JSONDecodeError("Expecting value", name, 0)


_DECODER = json.JSONDecoder(
    object_pairs_hook=lambda pairs: [_OBJECT, *pairs],
    parse_constant=_reject_constant,
)


def _go_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list) and value and value[0] is _OBJECT:
        return "object"
    return "array"


def _go_syntax_error(error: json.JSONDecodeError) -> str:
    """Translate Python's JSON syntax error into Go's wording for the same input."""
    if error.pos >= len(error.doc) or error.msg.startswith("Unterminated"):
        return "unexpected EOF"
    char = _go_quote_char(error.doc[error.pos])
    if error.msg.startswith("Expecting property name"):
        return f"invalid character {char} looking for beginning of object key string"
    if error.msg.startswith("Expecting ':'"):
        return f"invalid character {char} after object key"
    if error.msg.startswith("Expecting ','"):
        context = "object key:value pair" if _inside_object(error.doc, error.pos) else "array element"
        return f"invalid character {char} after {context}"
    if error.msg.startswith("Invalid control character"):
        return f"invalid character {char} in string literal"
    if error.msg.startswith("Invalid \\escape"):
        return f"invalid character {_go_quote_char(error.doc[error.pos + 1])} in string escape code"
    return f"invalid character {char} looking for beginning of value"


def _inside_object(doc: str, pos: int) -> bool:
    """Whether the innermost open bracket before pos is '{' (strings skipped)."""
    stack: list[str] = []
    in_string = escaped = False
    for char in doc[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return bool(stack) and stack[-1] == "{"


def _go_quote_char(char: str) -> str:
    """Go's quoteChar: the character in single quotes, escaped like strconv.Quote."""
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    quoted = json.dumps(char, ensure_ascii=False)[1:-1] if char.isprintable() else _go_escape(char)
    return f"'{quoted}'"


def _go_escape(char: str) -> str:
    short = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    if char in short:
        return short[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x80 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
