"""Apptainer's and SingularityCE's `remote.yaml`: read, edit, write back loadable.

Both programs decode it strictly, so an edit keeps every value and the indentation, adding only
keys of their schema (docs/protocol.md section 4).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import yaml

from credbridge.errors import HelperError
from credbridge.files import atomicfile
from credbridge.files.config import parse_yaml

Document = dict[str, Any]


class Style(NamedTuple):
    indent: int
    indented_lists: bool


V2_STYLE = Style(2, False)
V3_STYLE = Style(4, True)


class RemoteFile(NamedTuple):
    document: Document
    style: Style


def load(path: str) -> RemoteFile:
    """The file's document and style; an absent or empty file is an empty document in yaml.v3 style."""
    found = atomicfile.read(path)
    if found is None:
        return RemoteFile({}, V3_STYLE)
    return parse(found[0], path)


def parse(data: bytes, path: str) -> RemoteFile:
    """The document and style of a remote.yaml's bytes read from `path` (named in errors)."""
    text = data.decode("utf-8", "replace")
    document = parse_yaml(text, path, "fix or move it")
    if document is None:
        return RemoteFile({}, V3_STYLE)
    if not isinstance(document, dict):
        raise HelperError(f"{path} is not a YAML mapping: fix or move it")
    return RemoteFile(document, _style_of(text))


def save(path: str, remote: RemoteFile) -> None:
    """Replace the file atomically (0600); the caller holds atomicfile.exclusive(path)."""
    atomicfile.replace(path, dumps(remote))


def dumps(remote: RemoteFile) -> bytes:
    dumper = _IndentedListDumper if remote.style.indented_lists else _FlushListDumper
    # allow_unicode stays off: escaped, every string reads back exactly in Go (U+0085 would not).
    return yaml.dump(
        remote.document,
        Dumper=dumper,
        indent=remote.style.indent,
        sort_keys=False,
        default_flow_style=False,
        width=1 << 30,
    ).encode("utf-8")


def _style_of(text: str) -> Style:
    """The era of a file, from the indentation of its first nested line."""
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if stripped and not stripped.startswith("#") and len(stripped) < len(line):
            return V3_STYLE if len(line) - len(stripped) >= 4 else V2_STYLE
    return V3_STYLE


def _represent_none_as_empty(dumper: yaml.SafeDumper, _value: None) -> yaml.ScalarNode:
    """A key the file had with no value stays valueless: both programs refuse a written `null`."""
    return dumper.represent_scalar("tag:yaml.org,2002:null", "")


class _FlushListDumper(yaml.SafeDumper):
    """yaml.v2 style: list items flush with their key."""


class _IndentedListDumper(yaml.SafeDumper):
    """yaml.v3 style: list items indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Optional[Any]:
        return super().increase_indent(flow, False)


for _dumper in (_FlushListDumper, _IndentedListDumper):
    _dumper.add_representer(type(None), _represent_none_as_empty)
