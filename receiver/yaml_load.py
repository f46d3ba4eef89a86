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


_SPECIAL_KEYS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")  # `<<` and `=`


class _UniqueKeyLoader(_BASE):  # type: ignore[misc]
    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # A mapping merged into another (`<<: &b {...}`) gets the keys it merges itself
        # prepended here; seen again through an alias (*b), those are not duplicates.
        if not hasattr(self, "_flattened"):
            self._flattened: set[int] = set()
        self._flattened.add(id(node))
        super().flatten_mapping(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if id(node) not in getattr(self, "_flattened", ()):
            self._check_unique(node, deep)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def _check_unique(self, node: yaml.MappingNode, deep: bool) -> None:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag in _SPECIAL_KEYS:
                continue  # `<<: *base` may repeat; the base class merges its keys
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


def load_yaml(text: str) -> Any:
    """``text`` parsed safely; raises yaml.YAMLError (with a mark) on any problem."""
    return yaml.load(text, Loader=_UniqueKeyLoader)
