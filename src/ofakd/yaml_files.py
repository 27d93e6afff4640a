"""ofakd's YAML (recipes and each run's ``config.yaml``): read safely, as YAML 1.2 reads floats, with no key twice;
written in one style (block mappings, flow lists of plain values), so what is written reads back the same."""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import ConfigError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice (PyYAML would silently keep the last)."""


class Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-5`` (no dot) as a float, as YAML 1.2 does, and refuses a
    mapping that names a key twice."""

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


def parse_yaml(text: str, where: str = "YAML") -> Any:
    """Parse YAML text (safe), with a one-line error naming ``where``."""
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"config: {where} is nested too deeply to read") from None
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
