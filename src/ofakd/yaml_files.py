"""ofakd's YAML (recipes and each run's ``config.yaml``): read safely, as YAML 1.2 reads floats, with no key twice;
written in one style (block mappings, flow lists of plain values), so what is written reads back the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice (PyYAML would silently keep the last)."""


MAX_CHARACTERS = 1 << 20
"""The largest YAML text ofakd reads (a recipe or config.yaml is a few kilobytes)."""
MAX_EXPANDED_NODES = 100_000
"""The most values a document may hold with its aliases expanded (a config holds a few hundred): a "billion
laughs" of nested aliases is refused before anything walks it."""


class TooLargeError(yaml.YAMLError):
    """A document larger than ofakd reads, as written or with its aliases expanded."""


class Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-5`` (no dot) as a float, as YAML 1.2 does, refuses a
    mapping that names a key twice, and a document whose aliases expand beyond :data:`MAX_EXPANDED_NODES`."""

    def compose_document(self):
        node = super().compose_document()
        if _expanded_size(node, {}, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
            raise TooLargeError(f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values (a config holds a "
                                "few hundred): write the values out instead of nesting aliases")
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges are meant to override
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise DuplicateKeyError(None, None, f"key {key!r} appears twice in one mapping; keep one",
                                                key_node.start_mark)
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
"""YAML 1.2 floats: also ``1e-5`` without a dot (PyYAML's YAML 1.1 reads that as a string)."""
Loader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_PATTERN, list("-+0123456789."))


def _expanded_size(node: yaml.Node, sizes: dict[int, int], limit: int) -> int:
    """How many nodes ``node`` stands for with every alias expanded (a shared node counts at each use), stopping
    once past ``limit``; a node that contains itself counts as past it."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    sizes[key] = limit + 1  # (while counting: a node reached from inside itself is an endless document)
    total = 1
    children = node.value if isinstance(node.value, list) else []
    for child in children:
        for part in child if isinstance(child, tuple) else (child,):
            total += _expanded_size(part, sizes, limit)
            if total > limit:
                return total
    sizes[key] = total
    return total


def read_yaml_text(path: str | Path) -> str:
    """The text of a YAML file: UTF-8, at most :data:`MAX_CHARACTERS`; a one-line :class:`ConfigError` naming the
    file when it cannot be read, is not text, or is too large."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(4 * MAX_CHARACTERS + 1)
    except OSError as err:
        raise ConfigError(f"config: cannot read {str(path)!r} ({err.strerror})") from None
    text = decode_text(data, path)
    if len(text) > MAX_CHARACTERS:
        raise ConfigError(f"config: {path} is larger than the {MAX_CHARACTERS:,} characters a config may hold; "
                          "pass a recipe or config.yaml")
    return text


def decode_text(data: bytes, path: str | Path) -> str:
    """``data`` (the bytes of ``path``) as UTF-8 text; a one-line :class:`ConfigError` when it is not text."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config: {path} is not UTF-8 text (byte {data[err.start]:#04x} at position {err.start}); "
                          "pass a YAML text file (a recipe, or a run's config.yaml)") from None


def parse_yaml(text: str, where: str = "YAML") -> Any:
    """Parse YAML text (safe), with a one-line error naming ``where``."""
    if len(text) > MAX_CHARACTERS:
        raise ConfigError(f"config: {where} is larger than the {MAX_CHARACTERS:,} characters a config may hold")
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"config: {where} is nested too deeply to read") from None
    except TooLargeError as err:
        raise ConfigError(f"config: {where}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if isinstance(err, DuplicateKeyError):
            raise ConfigError(f"config: {where} line {mark.line + 1}: {err.problem}") from None
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config: {where}{at} is not valid YAML ({problem})") from None


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists of plain values (``scale: [0.08, 1.0]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
# a string our loader would read as a float (e.g. "0E0") is written quoted, so it reads back a string
_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_PATTERN, list("-+0123456789."))


def dump_yaml(tree: dict[str, Any]) -> str:
    """A config tree as YAML in config.yaml's style (block mappings, flow lists of plain values)."""
    return yaml.dump(tree, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
