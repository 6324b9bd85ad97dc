"""The models page's SVG charts: pure functions, escaped text, gaps for missing days."""

from __future__ import annotations

from datetime import date, timedelta

from lotlens.web.plots import line_chart, sparkline

DAYS = [date(2026, 11, 20) + timedelta(days=i) for i in range(5)]


def test_line_chart_draws_each_series_and_leaves_gaps() -> None:
    svg = line_chart(
        {"v1": [(DAYS[0], 2.0), (DAYS[1], 4.0), (DAYS[3], 1.0)], "<v2>": [(DAYS[4], 8.0)]}, DAYS, title="fix & rate"
    )
    assert svg.startswith("<svg")
    assert "fix &amp; rate" in svg
    assert "&lt;v2&gt;" in svg  # a model version never becomes markup
    assert "<v2>" not in svg
    assert svg.count("<polyline") == 1  # v1's first two days; day 3 is a gap; lone points are dots
    assert svg.count("<circle") == 4
    assert ">8<" in svg  # the y axis reaches the largest value


def test_line_chart_without_figures_is_an_empty_frame() -> None:
    svg = line_chart({}, DAYS, title="nothing yet")
    assert "<polyline" not in svg
    assert "nothing yet" in svg


def test_sparkline_scales_to_its_maximum_and_skips_missing_days() -> None:
    svg = sparkline([0.0, None, 10.0], width=100, height=24)
    assert 'points="0.0,22.0 100.0,2.0"' in svg
    assert "<circle" in sparkline([None, 3.0])
    assert "<polyline" not in sparkline([None, None])
