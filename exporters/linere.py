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

:func:`batch_plan` also decides what each ``findall`` result holds. Only the groups a
metric uses capture: each other group costs a bytes object per matching line, and more
than one group costs a tuple, which ``Counter`` then hashes and compares as a whole. When
the used groups follow each other at the top level with only literal text between them
(``level=(?P<l>[A-Z]+) service=(?P<s>[a-z]+)``), one group captures that whole span instead:
as few distinct values as the tuples would have, at the price of one bytes object. The
span is split into its groups once per distinct value, by ``fullmatch`` of that part of
the user's pattern, which takes the same choices the match did (see :class:`BatchPlan`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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
    """The bytes ``item`` matches under ``flags`` (the flags in force where it stands).

    Compiled on a fresh state: the compiler adds its state's flags, and the pattern's
    global ones (``(?i)``) must not come back inside a scoped ``(?-i:...)``."""
    scoped = sre_parse.State()
    scoped.flags = flags
    sub = sre_parse.SubPattern(scoped, [item])
    pat = sre_compile.compile(sub, 0)
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


# Before Python 3.14, \B never matches an empty string; between the two newlines of an
# empty line in a buffer it would.
_NO_EMPTY_NON_BOUNDARY = re.search(rb"\B", b"") is None


def _non_boundary(state: Any) -> list[tuple[Any, Any]]:
    r"""``\B`` not on an empty line: ``(?!(?<![^\n])\n)\B``."""
    not_after_text = sre_parse.SubPattern(state, [(C.NOT_LITERAL, NL)])
    empty_line = sre_parse.SubPattern(
        state, [(C.ASSERT_NOT, (-1, not_after_text)), (C.LITERAL, NL)]
    )
    return [(C.ASSERT_NOT, (1, empty_line)), (C.AT, C.AT_NON_BOUNDARY)]


def _rewrite(state: Any, sub: Any, flags: int, groups: dict[int, int | None] | None = None) -> Any:
    """``sub`` narrowed to single lines (see the module doc), built on ``state``.

    With ``groups`` (old group number -> new number, or None for not capturing), groups
    are renumbered as ``state`` opened them; without, they keep their numbers."""
    out = sre_parse.SubPattern(state, [])
    for op, av in sub.data:
        if op in _SINGLE:
            out.data.append(_single(state, (op, av), flags))
        elif op is C.AT and av is C.AT_NON_BOUNDARY and _NO_EMPTY_NON_BOUNDARY:
            out.data.extend(_non_boundary(state))
        elif op is C.AT:
            out.data.append((op, _AT_MAP.get(av, av)))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            lo, hi, body = av
            out.data.append((op, (lo, hi, _rewrite(state, body, flags, groups))))
        elif op is C.SUBPATTERN:
            group, add, rem, body = av
            inner = (flags | add) & ~rem
            new_body = _rewrite(state, body, inner, groups)
            if groups is not None and group is not None:
                group = groups[group]
                if group is not None:
                    state.closegroup(group, new_body)
            out.data.append((op, (group, add, rem, new_body)))
        elif op is C.BRANCH:
            _, items = av
            out.data.append((op, (None, [_rewrite(state, b, flags, groups) for b in items])))
        elif op in (C.ASSERT, C.ASSERT_NOT):
            direction, body = av
            out.data.append((op, (direction, _rewrite(state, body, flags, groups))))
        elif op is C.ATOMIC_GROUP:
            out.data.append((op, _rewrite(state, av, flags, groups)))
        elif op is C.GROUPREF_EXISTS:  # only without ``groups``: see _uses_group_numbers
            group, yes, no = av
            no2 = _rewrite(state, no, flags) if no is not None else None
            out.data.append((op, (group, _rewrite(state, yes, flags), no2)))
        else:  # GROUPREF and anything without sub-patterns
            out.data.append((op, av))
    return out


def _finish(state: Any, body: Any, empty_group: bool) -> re.Pattern[bytes]:
    flags = int(state.flags)
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


def batch_pattern(regex: str, empty_group: bool = False) -> re.Pattern[bytes]:
    """Compile ``regex`` for ``findall`` over newline-terminated lines (see module doc).

    Its groups keep their numbers. ``empty_group`` appends an empty capture group
    (numbered last), so that a pattern without groups has ``findall`` return ``b""`` per
    line rather than the matched text.
    """
    parsed = sre_parse.parse(regex.encode("utf-8"), 0)
    state = parsed.state
    return _finish(state, _rewrite(state, parsed, int(state.flags)), empty_group)


@dataclass(frozen=True)
class BatchPlan:
    """A metric's batch pattern, and how to get its groups' values from a ``findall`` result.

    With a span, a result is the text from the first used group to the last, and
    ``span.fullmatch`` of it (the user's pattern from that group to that one) gives the
    groups. That is what the line's match captured: the span holds only those groups and
    literal text, nothing in it looks outside it, and nothing in the pattern refers back
    to a group, so whether the rest of the pattern matches depends only on where the span
    ends. The match took the first of the span's ways (in sre's order) that ends there;
    ``fullmatch`` tries the same ways in the same order and takes that first one too.
    """

    pattern: re.Pattern[bytes]
    wanted: tuple[str, ...]
    index: tuple[int, ...] = ()  # without a span: where each wanted group is in a result
    span: re.Pattern[bytes] | None = None

    def values(self, raw: Any) -> tuple[bytes, ...]:
        """The wanted groups' values (b"" for a group that took no part) in one result."""
        if self.span is not None:
            m = self.span.fullmatch(raw)
            if m is None:  # cannot happen (see the class doc); counted under empty values
                return tuple(b"" for _ in self.wanted)
            return tuple(m[name] or b"" for name in self.wanted)
        items = raw if isinstance(raw, tuple) else (raw,)
        return tuple(items[i] for i in self.index)


def batch_plan(regex: str, wanted: Sequence[str], span: bool = True) -> BatchPlan:
    """The batch pattern for a metric that uses the named groups ``wanted`` (see module doc).

    No wanted group: results are ``b""``. One group, or several that cannot share a span
    (or ``span`` false): the wanted groups alone capture, in pattern order. A pattern with
    back-references keeps all its groups, numbered as written.
    """
    parsed = sre_parse.parse(regex.encode("utf-8"), 0)
    old = parsed.state
    flags = int(old.flags)
    wanted = tuple(wanted)
    names = list(dict.fromkeys(wanted))
    if _uses_group_numbers(parsed):
        pattern = _finish(old, _rewrite(old, parsed, flags), not names)
        index = tuple(old.groupdict[n] - 1 for n in wanted)
        return BatchPlan(pattern, wanted, index)
    state = sre_parse.State()
    state.flags = old.flags
    numbers = {gid: name for name, gid in old.groupdict.items()}
    top = (
        _span_items(parsed, {old.groupdict[n] for n in names}) if span and len(names) > 1 else None
    )
    if top is not None:
        first, last = top
        groups: dict[int, int | None] = {gid: None for gid in range(1, old.groups)}
        gid = state.opengroup()
        inner = sre_parse.SubPattern(old, parsed.data[first : last + 1])
        spanned = _rewrite(state, inner, flags, groups)
        state.closegroup(gid, spanned)
        body = _rewrite(state, sre_parse.SubPattern(old, parsed.data[:first]), flags, groups)
        body.data.append((C.SUBPATTERN, (gid, 0, 0, spanned)))
        rest = _rewrite(state, sre_parse.SubPattern(old, parsed.data[last + 1 :]), flags, groups)
        body.data.extend(rest.data)
        decode: re.Pattern[bytes] = sre_compile.compile(inner, 0)
        return BatchPlan(_finish(state, body, False), wanted, span=decode)
    groups = {}
    for old_gid in range(1, old.groups):
        name = numbers.get(old_gid)
        groups[old_gid] = state.opengroup(name) if name in names else None
    pattern = _finish(state, _rewrite(state, parsed, flags, groups), not names)
    index = tuple(pattern.groupindex[n] - 1 for n in wanted)
    return BatchPlan(pattern, wanted, index)


def _walk(sub: Any) -> Any:
    """Every (op, av) in ``sub``, nested ones included."""
    for op, av in sub.data:
        yield op, av
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            yield from _walk(av[2])
        elif op is C.SUBPATTERN:
            yield from _walk(av[3])
        elif op is C.BRANCH:
            for b in av[1]:
                yield from _walk(b)
        elif op in (C.ASSERT, C.ASSERT_NOT):
            yield from _walk(av[1])
        elif op is C.ATOMIC_GROUP:
            yield from _walk(av)
        elif op is C.GROUPREF_EXISTS:
            yield from _walk(av[1])
            if av[2] is not None:
                yield from _walk(av[2])


def _uses_group_numbers(parsed: Any) -> bool:
    return any(op in (C.GROUPREF, C.GROUPREF_EXISTS) for op, _ in _walk(parsed))


def _span_items(parsed: Any, gids: set[int]) -> tuple[int, int] | None:
    """Where the groups ``gids`` lie in the pattern's top level, if one span can hold them.

    Between them only literal text, and nothing inside them that looks past their own
    text (anchors, word boundaries, lookarounds), so their text alone decides their values.
    """
    at = [i for i, (op, av) in enumerate(parsed.data) if op is C.SUBPATTERN and av[0] in gids]
    if len(at) != len(gids):
        return None  # a group is nested in something else
    first, last = at[0], at[-1]
    for op, av in parsed.data[first : last + 1]:
        if op is C.LITERAL and av != NL:
            continue
        if op is not C.SUBPATTERN or av[0] not in gids:
            return None
        if any(o in (C.AT, C.ASSERT, C.ASSERT_NOT) for o, _ in _walk(av[3])):
            return None
    return first, last


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
