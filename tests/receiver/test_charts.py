"""Charts: exact PNG sizes, not blank, no data, many series, gaps, units, tables, threads."""

from __future__ import annotations

import io
import math
import struct
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import numpy as np
import pytest
from PIL import Image

from receiver.charts import Threshold, legend_label, stat_png, table_html, timeseries_png
from receiver.prometheus import PrometheusClient, Series, choose_step
from receiver.units_format import distinct_labels, format_value
from tests.promfill import PromFill, prometheus_fill

__all__ = ["prometheus_fill"]

T0 = 1_800_000_000.0


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk: checks the PNG itself, not a decoder's view."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def pixels(data: bytes) -> np.typing.NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def colours(region: np.typing.NDArray[np.uint8]) -> int:
    return len(np.unique(region.reshape(-1, 3), axis=0))


def sine(labels: dict[str, str], n: int = 360, phase: float = 0.0) -> Series:
    return Series(labels, [(T0 + i * 60, 1 + math.sin(i / 20 + phase)) for i in range(n)])


@pytest.mark.parametrize(("width", "height"), [(600, 250), (333, 177), (1200, 400), (80, 40)])
def test_exact_size_and_not_blank(width: int, height: int) -> None:
    png = timeseries_png([sine({"job": "a"})], width=width, height=height, title="t", unit="s")
    assert png_size(png) == (width, height)
    img = pixels(png)
    assert img.shape == (height, width, 3)
    plot = img[height // 5 : height * 3 // 4, width // 5 : width * 9 // 10]
    assert plot.std() > 5
    assert colours(plot) > 10


def test_no_data_is_drawn() -> None:
    png = timeseries_png([], width=400, height=200, title="Empty")
    assert png_size(png) == (400, 200)
    middle = pixels(png)[80:120, 150:250]
    assert (middle < 200).any()  # the grey "No data" text
    all_nan = Series({"a": "b"}, [(T0, math.nan), (T0 + 60, math.inf)])
    png2 = timeseries_png([all_nan], width=400, height=200, title="Empty")
    assert np.array_equal(pixels(png2), pixels(png))


def test_many_series_and_legend_cap() -> None:
    many = [sine({"svc": f"s{i}", "job": "x"}, phase=i) for i in range(25)]
    png = timeseries_png(many, width=600, height=300, legend_format="{{svc}}")
    assert png_size(png) == (600, 300)
    # The legend is capped, so the plot keeps most of the height even with 25 series.
    img = pixels(png)
    rows_with_lines = [y for y in range(300) if colours(img[y : y + 1, 60:590]) > 3]
    assert max(rows_with_lines) - min(rows_with_lines) > 150


def test_gaps_break_the_line() -> None:
    values = [(T0 + i * 60, 5.0 + (i % 7) / 10) for i in range(100) if not 40 <= i < 60]
    png = timeseries_png([Series({}, values)], width=600, height=250, step=60)
    img = pixels(png).astype(int)
    r, g, b = img[:, :, 0], img[:, :, 1], img[:, :, 2]
    line = (g > r + 30) & (g > b + 30)  # the first palette colour, green; fill is much paler
    columns: np.typing.NDArray[np.bool_] = np.asarray(line[20:220].any(axis=0))
    assert columns[100:130].all()  # data before the gap
    assert not columns[300:330].any()  # the gap (minutes 40-60 of 100) stays empty
    assert columns[480:520].all()


def test_thresholds_markers_spans_and_stat() -> None:
    png = timeseries_png(
        [sine({})],
        width=600,
        height=250,
        thresholds=[Threshold(1.5)],
        markers=[T0 + 3 * 3600],
        spans=[(T0 + 3 * 3600, T0 + 6 * 3600)],
        start=T0,
        end=T0 + 6 * 3600,
    )
    img = pixels(png)
    reddish = (img[:, :, 0] > 200) & (img[:, :, 1] < 120) & (img[:, :, 2] < 120)
    assert reddish.sum() > 100  # threshold line and start marker
    stat = stat_png(
        0.973, width=200, height=120, title="Up", unit="percentunit", sparkline=sine({})
    )
    assert png_size(stat) == (200, 120)
    assert colours(pixels(stat)) > 10
    assert png_size(stat_png(None, width=150, height=80)) == (150, 80)


def test_drawing_is_thread_safe_and_deterministic() -> None:
    def draw(i: int) -> bytes:
        return timeseries_png([sine({"i": str(i % 2)})], width=300, height=150, title=f"{i % 2}")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(draw, range(12)))
    assert len({r for r in results}) == 2


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1536, "bytes", "1.5 KiB"),
        (3 * 2**30, "bytes", "3 GiB"),
        (0.25, "s", "250 ms"),
        (90, "s", "1.5 min"),
        (1500, "ms", "1.5 s"),
        (0, "s", "0 s"),
        (42.5, "percent", "42.5%"),
        (0.973, "percentunit", "97.3%"),
        (1234, "reqps", "1.23 K req/s"),
        (2_500_000, "short", "2.5 Mil"),
        (0.5, None, "0.5"),
        (math.nan, "s", "–"),
        (math.inf, "short", "∞"),
        (7, "unknown-unit", "7"),
    ],
)
def test_format_value(value: float, unit: str | None, text: str) -> None:
    assert format_value(value, unit) == text


def test_legend_labels() -> None:
    labels = {"__name__": "up", "job": "api", "instance": "h:9100"}
    assert legend_label(labels, "{{job}} on {{ instance }} {{missing}}") == "api on h:9100 "
    assert legend_label(labels, None) == 'up{instance="h:9100", job="api"}'
    assert legend_label(labels, "__auto") == 'up{instance="h:9100", job="api"}'
    assert legend_label({}, None, "sum(x)") == "sum(x)"
    a = {"__name__": "x", "job": "j", "svc": "a"}
    b = {"__name__": "x", "job": "j", "svc": "b"}
    assert distinct_labels([a, b]) == [{"svc": "a"}, {"svc": "b"}]


def test_table_html_escapes_and_formats() -> None:
    html = table_html(
        ["service", "rate"],
        [["<script>x</script>", 1234.0], ['a"b', None]],
        units={"rate": "reqps"},
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "a&quot;b" in html
    assert "1.23 K req/s" in html
    assert html.count("<tr>") == 3


@pytest.mark.e2e
async def test_chart_from_real_prometheus(prometheus_fill: PromFill) -> None:
    end = prometheus_fill.end
    start = end - 24 * 3600
    step = choose_step(end - start, 600)
    async with aiohttp.ClientSession() as session:
        client = PrometheusClient(prometheus_fill.url, session)
        series = await client.query_range("demo_latency_seconds", start, end, step)
        mem = await client.query_range("demo_memory_bytes", start, end, step)
    png = timeseries_png(
        series, width=600, height=250, title="Latency", unit="s",
        start=start, end=end, step=step, thresholds=[Threshold(0.28)],
    )  # fmt: skip
    assert png_size(png) == (600, 250)
    assert colours(pixels(png)[40:200, 60:590]) > 10
    png = timeseries_png(mem, width=600, height=250, unit="bytes", start=start, end=end)
    assert colours(pixels(png)[40:200, 60:590]) > 10


def test_a_lone_sample_is_still_drawn() -> None:
    # A series that appeared at the last step has one sample: a line alone would draw nothing.
    from receiver.charts import PALETTE

    lone = Series({"job": "new"}, [(T0 + 3540, 5.0)])
    png = timeseries_png([lone], width=400, height=200, start=T0, end=T0 + 3600, step=60)
    rgb = tuple(int(PALETTE[0].lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    img = pixels(png)[:, :, :3].astype(int)
    plot_area = img[: img.shape[0] * 2 // 3]  # above the legend, whose swatch has the colour
    near = np.abs(plot_area - np.array(rgb)).sum(axis=2) < 60
    assert near.sum() >= 4
