"""YAML for config files: safe, and a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a second ``routes:`` block
silently replaces the first. Shared by the receiver's and the exporter's configs.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

# libyaml's parser where PyYAML has it; the constructor (and this check) is Python either way
_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BASE):  # type: ignore[misc]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may repeat; its keys are merged by the base class
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says what is wrong
                continue
            if duplicate:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def load_yaml(text: str) -> Any:
    """``text`` parsed safely; raises yaml.YAMLError (with a mark) on any problem."""
    return yaml.load(text, Loader=_UniqueKeyLoader)
