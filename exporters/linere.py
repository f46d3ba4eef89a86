"""Compile a user regex into a batch pattern with exact per-line semantics.

A log line is counted by a metric when ``re.search(pattern, line)`` finds a match in it
(the line without its newline, as bytes). Running one ``search`` per line costs a Python
call per line, so instead the pattern is rewritten so that ``findall`` over a buffer of
whole lines (every line ending in ``\\n``) returns exactly one result per matching line,
with the same groups ``re.search`` would capture:

* every single-character matcher that could match ``\\n`` (``[^"]``, ``\\s``, ``\\D``,
  ``\\W``, ``.`` under ``(?s)``, ranges spanning 10, a literal ``\\n``) is narrowed to
  exclude ``\\n``, so no match, lookahead or lookbehind ever crosses a line boundary;
* ``\\A``/``^`` become line-start and ``\\Z``/``$`` line-end assertions;
* ``[^\\n]*\\n`` is appended, so a match consumes the rest of its line including the
  newline and the next search starts at the next line: at most one match per line, and
  it is the leftmost one (the tail always succeeds, so it never changes which
  alternative the user pattern takes).

Unanchored patterns keep sre's literal-prefix fast search, which is why this is faster
than the ``^.*?(?:...)`` form. This uses the stdlib's ``re._parser``/``re._compiler``
(stable across CPython 3.11-3.13).
"""

from __future__ import annotations

import re
from re import _compiler as sre_compile  # type: ignore[attr-defined]
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

NL = 10
_NOT_NL: list[tuple[Any, Any]] = [(C.NEGATE, None), (C.LITERAL, NL)]
_AT_MAP = {
    C.AT_BEGINNING: C.AT_BEGINNING_LINE,
    C.AT_BEGINNING_STRING: C.AT_BEGINNING_LINE,
    C.AT_END: C.AT_END_LINE,
    C.AT_END_STRING: C.AT_END_LINE,
}
_SINGLE = (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN)


def user_pattern(regex: str) -> re.Pattern[bytes]:
    """The user's regex as a bytes pattern (raises re.error): the per-line reference."""
    return re.compile(regex.encode("utf-8"))


def _accepted(state: Any, item: tuple[Any, Any], flags: int) -> set[int]:
    sub = sre_parse.SubPattern(state, [item])
    pat = sre_compile.compile(sub, flags)
    return {b for b in range(256) if pat.fullmatch(bytes([b])) is not None}


def _ranges(values: set[int]) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    run: list[int] = []
    for b in sorted(values):
        if run and b == run[-1] + 1:
            run.append(b)
            continue
        if run:
            out.append((C.RANGE, (run[0], run[-1])) if len(run) > 1 else (C.LITERAL, run[0]))
        run = [b]
    if run:
        out.append((C.RANGE, (run[0], run[-1])) if len(run) > 1 else (C.LITERAL, run[0]))
    return out


def _single(state: Any, item: tuple[Any, Any], flags: int) -> tuple[Any, Any]:
    op, av = item
    if op is C.LITERAL and av != NL:
        return item
    if op is C.ANY and not flags & re.DOTALL:
        return item  # without (?s) sre's `.` already stops at \n, in its fastest loop
    if flags & re.LOCALE:  # case folding decided at match time: only add the \n exclusion
        return _single_locale(state, item, flags)
    accepted = _accepted(state, item, flags)
    accepted.discard(NL)
    if not accepted:  # matches nothing inside a line
        return (C.IN, [(C.NEGATE, None), (C.RANGE, (0, 255))])
    # explicit ranges: sre compiles a set of more than two runs (e.g. [^"\n]) to a bitmap,
    # one test per byte instead of one per listed item
    return (C.IN, _ranges(accepted))


def _single_locale(state: Any, item: tuple[Any, Any], flags: int) -> tuple[Any, Any]:
    op, av = item
    if op is C.NOT_LITERAL:
        if av == NL:
            return (C.IN, list(_NOT_NL))
        return (C.IN, [(C.NEGATE, None), (C.LITERAL, av), (C.LITERAL, NL)])
    if op is C.IN and av and av[0][0] is C.NEGATE:
        return (C.IN, [*av, (C.LITERAL, NL)])
    if op is C.ANY:
        return (C.IN, list(_NOT_NL))
    accepted = _accepted(state, item, flags)
    if NL not in accepted:
        return item
    accepted.discard(NL)
    if not accepted:
        return (C.IN, [(C.NEGATE, None), (C.RANGE, (0, 255))])
    return (C.IN, _ranges(accepted))


def _rewrite(state: Any, sub: Any, flags: int) -> Any:
    out = sre_parse.SubPattern(state, [])
    for op, av in sub.data:
        if op in _SINGLE:
            out.data.append(_single(state, (op, av), flags))
        elif op is C.AT:
            out.data.append((op, _AT_MAP.get(av, av)))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            lo, hi, body = av
            out.data.append((op, (lo, hi, _rewrite(state, body, flags))))
        elif op is C.SUBPATTERN:
            group, add, rem, body = av
            inner = (flags | add) & ~rem
            out.data.append((op, (group, add, rem, _rewrite(state, body, inner))))
        elif op is C.BRANCH:
            _, items = av
            out.data.append((op, (None, [_rewrite(state, b, flags) for b in items])))
        elif op in (C.ASSERT, C.ASSERT_NOT):
            direction, body = av
            out.data.append((op, (direction, _rewrite(state, body, flags))))
        elif op is C.ATOMIC_GROUP:
            out.data.append((op, _rewrite(state, av, flags)))
        elif op is C.GROUPREF_EXISTS:
            group, yes, no = av
            no2 = _rewrite(state, no, flags) if no is not None else None
            out.data.append((op, (group, _rewrite(state, yes, flags), no2)))
        else:  # GROUPREF and anything without sub-patterns
            out.data.append((op, av))
    return out


def batch_pattern(regex: str, empty_group: bool = False) -> re.Pattern[bytes]:
    """Compile ``regex`` for ``findall`` over newline-terminated lines (see module doc).

    ``empty_group`` appends an empty capture group (numbered last), so that a pattern
    without groups has ``findall`` return ``b""`` per line rather than the matched text.
    """
    source = regex.encode("utf-8")
    parsed = sre_parse.parse(source, 0)
    state = parsed.state
    flags = int(state.flags)
    body = _rewrite(state, parsed, flags)
    if empty_group:
        empty = sre_parse.SubPattern(state, [])
        gid = state.opengroup()
        state.closegroup(gid, empty)
        body.data.append((C.SUBPATTERN, (gid, 0, 0, empty)))
    # `.` (sre's fast ANY loop) unless (?s) is global, where it would also match \n
    dot = (C.IN, list(_NOT_NL)) if flags & re.DOTALL else (C.ANY, None)
    tail = sre_parse.SubPattern(state, [dot])
    body.data.append((C.MAX_REPEAT, (0, C.MAXREPEAT, tail)))
    body.data.append((C.LITERAL, NL))
    pattern: re.Pattern[bytes] = sre_compile.compile(body, 0)
    return pattern


def required_literal(regex: str) -> bytes | None:
    """The longest run of literal bytes that every match of ``regex`` contains, if any.

    Only literals that the match cannot avoid are considered: those at the top level of
    the pattern and inside plain or atomic groups there (not in alternatives, repeats or
    lookarounds), outside case-insensitive parts. A line without this substring cannot
    match, so the matcher may skip it (see :class:`exporters.match.RegexMetric`).
    """
    parsed = sre_parse.parse(regex.encode("utf-8"), 0)
    runs: list[bytearray] = [bytearray()]

    def walk(sub: Any, flags: int) -> None:
        for op, av in sub.data:
            if op is C.LITERAL and av != NL and not flags & re.IGNORECASE:
                runs[-1].append(av)
                continue
            if op is C.SUBPATTERN:
                _group, add, rem, body = av
                walk(body, (flags | add) & ~rem)
                continue
            if op is C.ATOMIC_GROUP:
                walk(av, flags)
                continue
            if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
                continue  # zero-width: the text around it is contiguous in the match
            runs.append(bytearray())

    walk(parsed, int(parsed.state.flags))
    best = max(runs, key=len)
    return bytes(best) if best else None
