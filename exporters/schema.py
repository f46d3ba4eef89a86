"""Type checks of plain (YAML) data, reporting the first problem as pydantic v2 does.

The exporter's config models were pydantic models. Importing pydantic costs about 0.2 s of
CPU, a tenth of a one-shot run over a million lines, so the exporter checks its few field
types itself. Key paths and wording are pydantic's (lax mode, ``extra="forbid"``), so
error messages stay what the docs and users know; ``tests/exporters/test_schema.py``
compares them with pydantic models on random configs.

A check is a function ``(value, loc) -> converted value`` that raises :class:`Invalid`
with the location of the first problem. Like pydantic, a model checks its fields in
declaration order, then refuses unknown keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, TypeVar

Loc = tuple[int | str, ...]
Check = Callable[[Any, Loc], Any]
T = TypeVar("T")

# pydantic parses integers from strings like "12", "+1_000" and "5.0" (not "5.", "1e3")
_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")
_I64 = 2**63  # pydantic turns floats into integers only within int64


class Invalid(ValueError):
    """The first problem: where (pydantic's ``loc``) and what (its ``msg``)."""

    def __init__(self, loc: Loc, msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


def _part(key: Any) -> int | str:
    """A mapping key as pydantic puts it in a location (True is 1, None is "None")."""
    return int(key) if isinstance(key, int) else str(key)


def text(v: Any, loc: Loc) -> str:
    if isinstance(v, str):
        return v
    raise Invalid(loc, "Input should be a valid string")


def integer(ge: int | None = None) -> Check:
    def check(v: Any, loc: Loc) -> int:
        n = _int(v, loc)
        if ge is not None and n < ge:
            raise Invalid(loc, f"Input should be greater than or equal to {ge}")
        return n

    return check


def _int(v: Any, loc: Loc) -> int:
    if isinstance(v, int):  # bool too: lax mode takes True as 1
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise Invalid(loc, "Input should be a finite number")
        if not v.is_integer():
            msg = "Input should be a valid integer, got a number with a fractional part"
            raise Invalid(loc, msg)
        if abs(v) >= _I64:
            raise Invalid(loc, "Unable to parse input string as an integer, exceeded maximum size")
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        if _INT_TEXT.fullmatch(s):
            return int(s.partition(".")[0])
        raise Invalid(loc, "Input should be a valid integer, unable to parse string as an integer")
    raise Invalid(loc, "Input should be a valid integer")


def number(v: Any, loc: Loc) -> float:
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        try:
            if s.isascii():  # float() also takes other scripts' digits, pydantic does not
                return float(s)
        except ValueError:
            pass
        raise Invalid(loc, "Input should be a valid number, unable to parse string as a number")
    raise Invalid(loc, "Input should be a valid number")


def scalar(v: Any, loc: Loc) -> str | int | float | bool | None:
    """``str | int | float | bool | None``: kept as they are (a union's smart mode)."""
    if v is None or isinstance(v, str | int | float):
        return v
    raise Invalid((*loc, "str"), "Input should be a valid string")  # the union's first member


def one_of(*choices: str) -> Check:
    quoted = [repr(c) for c in choices]
    msg = f"Input should be {' or '.join([', '.join(quoted[:-1]), quoted[-1]])}"

    def check(v: Any, loc: Loc) -> str:
        if isinstance(v, str) and v in choices:
            return v
        raise Invalid(loc, msg)

    return check


def optional(check: Check) -> Check:
    return lambda v, loc: None if v is None else check(v, loc)


def list_of(item: Check) -> Check:
    def check(v: Any, loc: Loc) -> list[Any]:
        if not isinstance(v, list | tuple):
            raise Invalid(loc, "Input should be a valid list")
        return [item(x, (*loc, i)) for i, x in enumerate(v)]

    return check


def dict_of(value: Check) -> Check:
    """``dict[str, value]``; each key is checked before its value."""

    def check(v: Any, loc: Loc) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise Invalid(loc, "Input should be a valid dictionary")
        out = {}
        for k, x in v.items():
            text(k, (*loc, _part(k), "[key]"))
            out[k] = value(x, (*loc, k))
        return out

    return check


def either(*members: tuple[str, Check]) -> Check:
    """A union of containers: the first member that accepts; else the first one's error."""

    def check(v: Any, loc: Loc) -> Any:
        first: Invalid | None = None
        for tag, member in members:
            try:
                return member(v, (*loc, tag))
            except Invalid as e:
                first = first or e
        assert first is not None
        raise first

    return check


def before(convert: Callable[[Any], Any], then: Check) -> Check:
    """A ``mode="before"`` field validator: ``convert`` raises ValueError for bad input."""

    def check(v: Any, loc: Loc) -> Any:
        try:
            v = convert(v)
        except ValueError as e:
            raise Invalid(loc, f"Value error, {e}") from None
        return then(v, loc)

    return check


def model(cls: type[T], checks: dict[str, Check]) -> Callable[[Any, Loc], T]:
    """A dataclass from a mapping: ``checks`` per field (in order); defaults are the class's."""
    required = {f.name for f in fields(cls) if f.default is MISSING}  # type: ignore[arg-type]
    required -= {f.name for f in fields(cls) if f.default_factory is not MISSING}  # type: ignore[arg-type]
    what = f"Input should be a valid dictionary or instance of {cls.__name__}"

    def check(v: Any, loc: Loc) -> T:
        if not isinstance(v, dict):
            raise Invalid(loc, what)
        values = {}
        for name, field_check in checks.items():
            if name in v:
                values[name] = field_check(v[name], (*loc, name))
            elif name in required:
                raise Invalid((*loc, name), "Field required")
        for k in v:  # then the keys that are not fields
            if not isinstance(k, str):
                raise Invalid((*loc, _part(k)), "Keys should be strings")
            if k not in checks:
                raise Invalid((*loc, k), "Extra inputs are not permitted")
        return cls(**values)

    return check
