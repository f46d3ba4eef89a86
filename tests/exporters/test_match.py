"""Batch matching counts exactly what a line-by-line reference counts, whatever the batching."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from exporters import match
from exporters.config import MetricConfig
from exporters.linere import batch_pattern, batch_plan, required_literal
from exporters.lines import Splitter
from exporters.match import ChunkResult, Key, Matcher
from tests.exporters.conftest import reference_counts

# Patterns chosen to tempt a batch matcher into crossing lines or matching twice per line.
PATTERNS = [
    r'"(?P<a>[A-Z]+) [^"]*" (?P<b>\d{3})',
    r"(?P<a>[^x]*)x",
    r"(?P<a>\s+)(?P<b>\S*)",
    r"(?P<a>\W\D)",
    r"(?P<a>a?)",
    r"^(?P<a>$)",
    r"(?P<a>.*)$",
    r"(?s)(?P<a>a.b)",
    r"\A(?P<a>ab|c)\Z",
    r"(?P<a>[\x00-\x7f]{2,})z",
    r"(?<!a)(?P<a>b+)",
    r"(?P<a>x)(?!\n)",
    r"(?i)(?P<a>AB|b\s?a)",
    r"(?P<a>a)(?P<b>b)?(?(2)c|d)",
    r"(?P<a>(?:[ab]\s)+)",
    r"(?P<a>\bab\b)",
    r"(?x) (?P<a> a [^b]* b )  # verbose",
    r'(?P<a>"[^"]*")(?P<b>.)',
    r"(?s:(?P<a>a.))b",
    r"(?s)a(?-s:(?P<a>.))b",
    r"(?P<a>[^a]+)z",
    r"(?i)(?P<a>[^a])X",
    r"(?P<a>[\s\S])b",
    r"(?P<a>\w+)\W",
    r"(?i)(?P<a>[a-c]+)Z",
    r"(?P<a>GET) (?P<b>[^ ]*)",
    r"x(?=\s)(?P<a>\sA)",
    # groups read back from one captured span (see exporters.linere.BatchPlan)
    r"(?P<a>a+)(?P<b>a*)b",
    r"(?P<b>x)=(?P<a>[ab ]*)",
    r"(?P<a>(?:a|ab)+)(?P<b>b?)c",
    r"(?P<a>[ab]*?) (?P<b>[^ ]+?)z",
    r"(?P<a>a*)(?P<b>(c)?x)",
    r"(?i)(?P<a>a+)B(?P<b>[a-c]?)",
    r"(?P<a>[ab]+)(?P<b>\b)",
    r"(z)?(?P<a>a)(x)?(?P<b>b)(c)?",
    # a scoped flag inside a global one; \B, which never matches an empty line (< 3.14)
    r"(?i)x(?-i:(?P<a>[^a]))b",
    r"(?i)(?-i:(?P<a>[a-c]))[\x00-\x20]",
    r"(?P<a>\B)",
    r"(?P<a>a?)\B",
]
ALPHABET = ["a", "b", "c", "x", "z", " ", "=", '"', "\t", "A", "B", "GET", "200", "\n", "\n", "\n"]


def random_log(rng: random.Random, n_tokens: int) -> bytes:
    return "".join(rng.choice(ALPHABET) for _ in range(n_tokens)).encode()


def metric(pattern: str, with_labels: bool = True) -> MetricConfig:
    labels = [g for g in ("a", "b") if f"<{g}>" in pattern] if with_labels else []
    return MetricConfig(name="m_total", type="counter", match=pattern, labels=labels)


def batched(matcher: Matcher, data: bytes, rng: random.Random) -> ChunkResult:
    """Feed ``data`` in random-sized reads through the splitter, as the tailer does."""
    splitter = Splitter(65536)
    total = ChunkResult()
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 40)
        whole, _ = splitter.feed(data[pos : pos + step])
        pos += step
        if whole:
            total.merge(matcher.run(whole, 65536))
    rest = splitter.flush()
    if rest:
        total.merge(matcher.run(rest, 65536))
    return total


@pytest.mark.parametrize("pattern", PATTERNS)
def test_random_logs_match_line_by_line_reference(pattern: str) -> None:
    m = metric(pattern)
    matcher = Matcher("regex", [m])
    for seed in range(150):
        rng = random.Random(seed)
        data = random_log(rng, rng.randint(0, 60))
        expected = reference_counts(m, data if not data or data.endswith(b"\n") else data + b"\n")
        got = batched(matcher, data, rng).counts.get("m_total", Counter())
        assert got == expected, (seed, data)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_label_less_counters_match_reference(pattern: str) -> None:
    """Without labels only the number of matching lines counts (an empty group is added)."""
    m = metric(pattern, with_labels=False)
    matcher = Matcher("regex", [m])
    for seed in range(60):
        rng = random.Random(seed)
        data = random_log(rng, rng.randint(0, 60)) + b"\n"
        got = matcher.run(data, 65536).counts.get("m_total", Counter())
        assert got == reference_counts(m, data), (seed, data)


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        (r'"(?P<m>[A-Z]+) [^"\n]*" (?P<s>\d{3}) ', b'" '),
        (r"latency_ms=(?P<ms>[0-9.]+)", b"latency_ms="),
        (r"a(?i:bc)d", b"a"),
        (r"(?i)abc", None),
        (r"ab|cd", None),
        (r"(?:ab)+", None),
        (r"\bab\b", b"ab"),
        (r"x(?=yz)w", b"xw"),  # the lookahead is zero-width: x and w are adjacent
        (r"(?P<a>x)(?P<b>yz)", b"xyz"),
        (r"a\nb", b"a"),
        (r".*", None),
    ],
)
def test_required_literal(pattern: str, literal: bytes | None) -> None:
    assert required_literal(pattern) == literal


@pytest.mark.parametrize(("min_hits", "per_hit"), [(1, 1), (1, 10**9), (8, 2048), (3, 40)])
def test_literal_prefilter_dense_sparse_and_switching(
    monkeypatch: pytest.MonkeyPatch, min_hits: int, per_hit: int
) -> None:
    """Lines holding the required literal may be rare, frequent, or both in one buffer."""
    monkeypatch.setattr(match, "SPARSE_MIN_HITS", min_hits)
    monkeypatch.setattr(match, "SPARSE_BYTES_PER_HIT", per_hit)
    ms = [
        MetricConfig(name="a_total", type="counter", match=r"rt=(?P<v>\d+)x", labels=["v"]),
        MetricConfig(name="b_total", type="counter", match=r"zz(?P<v>a|b)", labels=["v"]),
        MetricConfig(name="c_total", type="counter", match=r"rt=\d"),
    ]
    matcher = Matcher("regex", ms)
    for seed in range(40):
        rng = random.Random(seed)
        lines = []
        for i in range(rng.randint(0, 400)):
            dense = (i // 50) % 2 == 0  # runs of frequent hits, then runs of rare ones
            words = ["a", "b", "rt=", "1", "2x", "x", "zz", " "]
            line = "".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
            lines.append(line if dense or rng.random() < 0.02 else line.replace("rt=", "r"))
        data = "".join(line + "\n" for line in lines).encode()
        start = rng.randint(0, len(lines))  # a range of whole lines inside a larger buffer
        begin = len("".join(line + "\n" for line in lines[:start]).encode())
        res = matcher.run(data, 65536, start=begin)
        for m in ms:
            assert res.counts.get(m.name, Counter()) == reference_counts(m, data[begin:]), seed


def test_gauge_keeps_labels_seen_in_earlier_reads() -> None:
    m = MetricConfig(
        name="q", type="gauge", match=r"(?P<k>\w+)=(?P<v>\d+)", labels=["k"], value="v"
    )
    matcher = Matcher("regex", [m])
    acc = ChunkResult()
    matcher.run(b"a=1\n", 65536, acc)
    matcher.run(b"b=2\n", 65536, acc)
    assert matcher.finish(acc).last["q"] == {("a",): "1", ("b",): "2"}


@pytest.mark.parametrize(
    ("pattern", "wanted", "spanned", "groups"),
    [
        (r"level=(?P<l>[A-Z]+) service=(?P<s>[a-z]+)", ["s", "l"], True, 1),
        (r'"(?P<m>[A-Z]+) [^"\n]*" (?P<s>\d{3}) ', ["m", "s"], False, 2),
        (r"(x)(?P<a>y)(z)", ["a"], False, 1),
        (r"(x)(?P<a>y)(z)", [], False, 1),  # only the empty group: b"" per line
        (r"(?P<a>a)(?P<b>\b)", ["a", "b"], False, 2),
        (r"(?P<a>a)(?P<b>b)(?P=a)", ["a"], False, 2),  # a back-reference keeps numbering
    ],
)
def test_only_used_groups_capture(
    pattern: str, wanted: list[str], spanned: bool, groups: int
) -> None:
    plan = batch_plan(pattern, wanted)
    assert (plan.span is not None, plan.pattern.groups) == (spanned, groups)


def test_span_values_and_label_order() -> None:
    plan = batch_plan(r"level=(?P<l>[A-Z]+) service=(?P<s>[a-z]+)", ["s", "l", "s"])
    found = plan.pattern.findall(b"t level=INFO service=cart x=1\nlevel=WARN service=db\n")
    assert found == [b"INFO service=cart", b"WARN service=db"]
    assert [plan.values(r) for r in found] == [(b"cart", b"INFO", b"cart"), (b"db", b"WARN", b"db")]


def test_two_labels_from_one_group() -> None:
    m = MetricConfig(
        name="m_total", type="counter", match=r"(?P<a>\w+)=(?P<b>\d)", labels={"x": "a", "y": "a"}
    )
    res = Matcher("regex", [m]).run(b"k=1\nk=2 j=3\nz=\n", 65536)
    assert res.counts["m_total"] == Counter({("k", "k"): 2})


def test_a_line_counts_once_even_with_many_matches() -> None:
    m = MetricConfig(name="m_total", type="counter", match="a")
    res = Matcher("regex", [m]).run(b"aaaa\nbab\nb\n\naa\n", 65536)
    assert res.counts["m_total"] == Counter({(): 3})
    assert res.lines == 5


def test_negated_class_never_spans_lines() -> None:
    pattern = batch_pattern(r'"(?P<r>[^"]*)"')
    assert pattern.findall(b'x "open\nclosed" y\n"ok"\n') == [b"ok"]


def test_several_metrics_match_one_line() -> None:
    ms = [
        MetricConfig(name="a_total", type="counter", match="GET"),
        MetricConfig(name="b_total", type="counter", match=r"(?P<s>\d{3})", labels=["s"]),
        MetricConfig(name="c", type="histogram", match=r"rt=(?P<v>[\d.]+)", value="v"),
    ]
    res = Matcher("regex", ms).run(b"GET 200 rt=0.5\nPOST 500 rt=1\n", 65536)
    assert res.counts["a_total"] == Counter({(): 1})
    assert res.counts["b_total"] == Counter({("200",): 1, ("500",): 1})
    assert res.counts["c"] == Counter({("0.5",): 1, ("1",): 1})


def test_gauge_keeps_last_value_per_label_set() -> None:
    m = MetricConfig(
        name="q", type="gauge", match=r"(?P<k>\w+)=(?P<v>\d+)", labels=["k"], value="v"
    )
    res = Matcher("regex", [m]).run(b"a=1\nb=2\na=3\n", 65536)
    assert res.last["q"] == {("a",): "3", ("b",): "2"}


def test_gauge_takes_the_last_line_with_a_number_whatever_the_batching() -> None:
    m = MetricConfig(name="g", type="gauge", match=r"v=(?P<v>\S+)", value="v")
    lines = [b"v=5\n", b"v=x\n", b"v=6\n", b"v=7\n", b"v=abc\n", b"v=1_0\n"]
    whole = Matcher("regex", [m]).run(b"".join(lines), 65536)
    acc = ChunkResult()
    one_by_one = Matcher("regex", [m])
    for line in lines:
        one_by_one.run(line, 65536, acc)
    for res in (whole, one_by_one.finish(acc)):
        assert res.last["g"] == {(): "7"}  # not thrown away by the bad values after it
        assert res.gauge_lines["g"] == 3  # lines that set it, not label sets
        assert res.parse_errors == 3


def test_json_lines_fields_where_and_parse_errors() -> None:
    ms = [
        MetricConfig(
            name="err_total",
            type="counter",
            format="json",
            where={"level": "ERROR", "http.status": 500},
            labels={"service": "service", "code": "error.code"},
        ),
        MetricConfig(name="lat", type="histogram", format="json", value="t.ms", labels=["svc"]),
    ]
    data = (
        b'{"level":"ERROR","http":{"status":500},"service":"api","error":{"code":"E1"}}\n'
        b'{"level":"ERROR","http":{"status":404},"service":"api"}\n'
        b"not json at all\n"
        b'["a list"]\n'
        b"\n"
        b'{"level":"INFO","svc":"web","t":{"ms":12.5}}\n'
        b'{"level":"ERROR","http":{"status":"500"},"service":"db"}\n'
    )
    data += b'{"level":"ERROR","http":{"status":500.0},"service":"web"}\n'  # the same number
    data += b'{"level":"ERROR","http":{"status":' + b"9" * 400 + b'},"service":"x"}\n'
    data += b'{"level":"ERROR","http":{"status":500000000000000001},"service":"y"}\n'
    res = Matcher("json", ms).run(data, 65536)
    expected: Counter[Key] = Counter({("api", "E1"): 1, ("db", ""): 1, ("web", ""): 1})
    assert res.counts["err_total"] == expected
    assert res.counts["lat"] == Counter({("web", "12.5"): 1})
    assert res.parse_errors == 2
