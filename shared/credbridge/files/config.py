"""credbridge's own configuration file: `$XDG_CONFIG_HOME/credbridge/config.yaml`.

One YAML mapping, read per call from the caller's environment; each part of credbridge reads its
own top-level section, and a file that is not a mapping is one error line (docs/protocol.md
section 5).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Optional

from credbridge.errors import HelperError
from credbridge.files import atomicfile
from credbridge.files.userdirs import config_home

CONFIG_ENV = "CREDBRIDGE_CONFIG"


def config_path(env: Mapping[str, str]) -> str:
    """$CREDBRIDGE_CONFIG, else $XDG_CONFIG_HOME/credbridge/config.yaml."""
    return env.get(CONFIG_ENV) or os.path.join(config_home(env), "credbridge", "config.yaml")


#: path -> (the file's identity, its document): the agent asks on every call, and an edited file
#: must take effect at the next one, so the file is stat()ed each time and parsed only when it changed.
_PARSED: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def load_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The whole configuration, {} when the file does not exist; callers only read it (it is shared)."""
    path = config_path(env)
    try:
        descriptor, info = atomicfile.open_regular(path)
        with open(descriptor, encoding="utf-8") as file:
            identity = (info.st_ino, info.st_size, info.st_mtime_ns)
            cached = _PARSED.get(path)
            if cached is not None and cached[0] == identity:
                return cached[1]
            text = file.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise HelperError(
            f"cannot read the credbridge configuration {path}: {getattr(error, 'strerror', None) or error}"
        ) from None
    document = parse_yaml(text, f"the credbridge configuration {path}", "fix or remove it")
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise HelperError(f"the credbridge configuration {path} must be a YAML mapping (key: value lines)")
    _PARSED[path] = (identity, document)
    return document


def parse_yaml(text: str, described: str, fix: str) -> Any:
    """The YAML document, without anchors and aliases: nine aliases a level make a 400-byte file
    expand to billions of values, and nothing credbridge or Apptainer writes uses them."""
    import yaml  # only when a file exists: the common call has none

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                raise HelperError(
                    f"{described} uses a YAML alias (*{shortened(event.anchor)}, line "
                    f"{event.start_mark.line + 1}), which credbridge does not read: write the value out"
                )
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise HelperError(f"{described} is not valid YAML{where}: {fix}") from None
    except ValueError:  # an int of more digits than Python converts, a date that does not exist
        raise HelperError(
            f"{described}: {_unreadable_value(text, loader)} cannot be read "
            f"(a number of over {sys.get_int_max_str_digits()} digits, or a date that does not exist?): "
            f"put it in quotes, or {fix}"
        ) from None


def _unreadable_value(text: str, loader: Any) -> str:
    """Which value of a YAML text its constructor refuses, as `key.path` (line N): asked only after a load failed."""
    import yaml

    constructor = loader("")

    def refused(node: Any, path: list[str]) -> Optional[str]:
        if isinstance(node, yaml.MappingNode):
            children = [(child, path + [_key_name(key)]) for key, value in node.value for child in (key, value)]
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, path + [str(index)]) for index, item in enumerate(node.value)]
        else:
            try:
                constructor.construct_object(node)
                return None
            except ValueError:
                return f"`{'.'.join(path) or '(the document)'}` (line {node.start_mark.line + 1})"
        return next(filter(None, (refused(child, at) for child, at in children)), None)

    return refused(yaml.compose(text, Loader=loader), []) or "a value"


def _key_name(key: Any) -> str:
    """A mapping key as a path segment: a scalar's text without a URL's password, shortened; a complex key as `?`."""
    from credbridge.urls import redacted

    text = redacted(key.value) if isinstance(key.value, str) else "?"
    return text if len(text) <= 40 else text[:40] + "..."


def shortened(value: Any, limit: int = 40) -> str:
    """A value as an error may show it: a container by its type and size, anything else by a truncated
    spelling; never the whole of a value that may be huge."""
    if isinstance(value, (dict, list, tuple, set)):
        return f"a {type(value).__name__} of {len(value)}"
    if not isinstance(value, str):
        return f"a value of type {type(value).__name__}"
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


def section(env: Mapping[str, str], name: str) -> dict[str, Any]:
    """One top-level mapping of the configuration, {} when absent."""
    value = load_config(env).get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HelperError(
            f"`{name}` in the credbridge configuration {config_path(env)} must be a mapping, not {shortened(value)}"
        )
    return value
