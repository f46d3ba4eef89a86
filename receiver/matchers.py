"""Alertmanager matcher syntax: name="value", name!="value", name=~"re", name!~"re".

Regexes are fully anchored, as in Alertmanager. A missing label matches as "".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_MATCHER_RE = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")\s*
        (?P<op>=~|!~|!=|=)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^"\s,{}]*)\s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return str(json.loads(text))
    return text


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; raises ValueError saying what is wrong."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    m = _MATCHER_RE.match(body)
    if not m:
        raise ValueError(f'not a matcher (expected name="value", name=~"regex", ...): {text!r}')
    try:
        name = _unquote(m.group("name"))
        value = _unquote(m.group("value"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"bad quoting in matcher {text!r}: {exc.msg}") from exc
    op = m.group("op")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(f"(?:{value})")
        except re.error as exc:
            raise ValueError(f"bad regular expression in matcher {text!r}: {exc}") from exc
    return Matcher(name=name, op=op, value=value, _regex=regex)


def unquote_receiver(name: str) -> str:
    """Alertmanager sends receiver names regex-quoted in some paths (``a\\.b``): undo it."""
    return re.sub(r"\\(.)", r"\1", name)
