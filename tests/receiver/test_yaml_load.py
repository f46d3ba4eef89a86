"""Config YAML: safe, and a key given twice is an error (merges and aliases are not)."""

from __future__ import annotations

import pytest
import yaml

from receiver.yaml_load import load_yaml


def test_a_key_twice_is_an_error_with_its_place() -> None:
    with pytest.raises(yaml.YAMLError, match="found the key 'a' twice") as info:
        load_yaml("a: 1\nb: 2\na: 3\n")
    mark = getattr(info.value, "problem_mark", None)
    assert mark is not None and mark.line == 2


@pytest.mark.parametrize(
    "text",
    [
        "base: &b {x: 1}\nuse: {<<: *b, x: 2}\n",  # a merge overrides, it does not repeat
        "a: &a {x: 1}\nb: &b {y: 2}\nc: {<<: [*a, *b], <<: *a}\n",
        "outer: {<<: &b {<<: {x: 1}, x: 2}}\nother: *b\n",  # merged, then aliased
        "{=: 1}\n",
        "items: [{a: 1}, {a: 2}]\n",
    ],
)
def test_what_plain_safe_load_takes_is_taken_alike(text: str) -> None:
    assert load_yaml(text) == yaml.safe_load(text)


def test_keys_equal_once_typed_are_the_same_key() -> None:
    with pytest.raises(yaml.YAMLError, match="twice"):
        load_yaml("1: a\n1.0: b\n")
