"""Chart geometry for the dashboard's inline SVG: pure functions from a series to coordinates.

No I/O and no formatting of their own: labels arrive formatted (per language)
and numbers on the axis are formatted by the ``format_tick`` the caller gives.
Coordinates are in the SVG's viewBox units; the SVG scales to its container's
width, so the same geometry serves a phone and a desktop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# At 14 units a letter, text stays readable from a phone's width (about 360 px) upwards.
WIDTH = 420
BAR_HEIGHT = 220  # the whole vertical bar chart
MARGIN_LEFT = 60  # room for the value axis' labels
MARGIN_RIGHT = 28  # room for half the last axis label ("2. März", "März 2026") centred on its bar
MARGIN_TOP = 12
MARGIN_BOTTOM = 30  # room for the category axis' labels
BAR_SHARE = 0.7  # of its slot; the rest is the gap
ROW_HEIGHT = 32  # one row of a horizontal bar chart
ROW_BAR = 20
LABEL_WIDTH = 136  # the category labels left of horizontal bars
VALUE_WIDTH = 56  # the value right of the longest horizontal bar


@dataclass(frozen=True)
class Datum:
    label: str  # in full, for the bar's tooltip and the table: "2 Mar 2026"
    value: int
    text: str = ""  # the value formatted: "12" or "€9.90"; empty: str(value)
    axis_label: str = ""  # short, under the axis where given: "Mar 2"

    @property
    def shown(self) -> str:
        return self.text or str(self.value)


@dataclass(frozen=True)
class Bar:
    datum: Datum
    x: float
    y: float
    width: float
    height: float

    @property
    def centre(self) -> float:
        return round(self.x + self.width / 2, 2)


@dataclass(frozen=True)
class Tick:
    value: int
    position: float  # y for a vertical chart
    text: str


@dataclass(frozen=True)
class AxisLabel:
    x: float
    text: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float  # the baseline's y
    bars: list[Bar]
    ticks: list[Tick]
    axis_labels: list[AxisLabel]
    scale_max: int

    @property
    def empty(self) -> bool:
        return not self.bars

    @property
    def total(self) -> int:
        return sum(bar.datum.value for bar in self.bars)

    @property
    def peak(self) -> Datum | None:
        """The first of the highest values; None when every value is zero (or there are none)."""
        best = max(self.bars, key=lambda bar: bar.datum.value, default=None)
        return best.datum if best is not None and best.datum.value > 0 else None


@dataclass(frozen=True)
class Row:
    datum: Datum
    y: float  # the bar's top
    length: float
    label_y: float  # the text baseline, centred on the bar


@dataclass(frozen=True)
class HBarChart:
    width: int
    height: int
    left: float  # where the bars start
    rows: list[Row]
    scale_max: int

    @property
    def total(self) -> int:
        return sum(row.datum.value for row in self.rows)


def nice_step(max_value: int, count: int = 4) -> int:
    """A round step (1, 2 or 5 times a power of ten, at least 1) for about ``count`` ticks to cover
    ``max_value``."""
    if max_value <= 0:
        return 1
    raw = -(-max_value // count)  # ceiling division
    magnitude = 1
    while magnitude * 10 <= raw:
        magnitude *= 10
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def scale_max(max_value: int, count: int = 4) -> int:
    """The top of the value axis: the first multiple of the step at or above the largest value."""
    step = nice_step(max_value, count)
    return max(step, -(-max_value // step) * step)


def ticks(max_value: int, count: int = 4) -> list[int]:
    step = nice_step(max_value, count)
    return list(range(0, scale_max(max_value, count) + 1, step))


def label_every(count: int, step: int) -> list[int]:
    """Indices to label on a category axis: every ``step``-th, counted back from the last."""
    if count <= 0 or step <= 0:
        return []
    return sorted(range(count - 1, -1, -step))


def _plain(value: int) -> str:
    return str(value)


def bar_chart(
    data: Sequence[Datum], *, format_tick: Callable[[int], str] = _plain, tick_count: int = 4
) -> BarChart:
    """Vertical bars, one per datum, left to right, over a value axis starting at zero.

    Negative values are drawn as zero (the table shows the real number).
    """
    top, bottom = float(MARGIN_TOP), float(BAR_HEIGHT - MARGIN_BOTTOM)
    left, right = float(MARGIN_LEFT), float(WIDTH - MARGIN_RIGHT)
    largest = max((max(datum.value, 0) for datum in data), default=0)
    highest = scale_max(largest, tick_count)
    plot_height = bottom - top

    def y_of(value: int) -> float:
        return round(bottom - plot_height * max(value, 0) / highest, 2)

    slot = (right - left) / len(data) if data else 0.0
    bars, labels = [], []
    for index, datum in enumerate(data):
        x = left + slot * index + slot * (1 - BAR_SHARE) / 2
        height = bottom - y_of(datum.value)
        if datum.value > 0:
            height = max(height, 1.0)  # a small value stays visible
        bar = Bar(datum, round(x, 2), round(bottom - height, 2), round(slot * BAR_SHARE, 2), round(height, 2))
        bars.append(bar)
        if datum.axis_label:
            labels.append(AxisLabel(bar.centre, datum.axis_label))
    tick_list = [Tick(value, y_of(value), format_tick(value)) for value in ticks(largest, tick_count)]
    return BarChart(WIDTH, BAR_HEIGHT, left, right, top, bottom, bars, tick_list, labels, highest)


def hbar_chart(data: Sequence[Datum]) -> HBarChart:
    """Horizontal bars, one row per datum, top to bottom; lengths relative to the largest value."""
    left = float(LABEL_WIDTH)
    room = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    largest = max((max(datum.value, 0) for datum in data), default=0)
    rows = []
    for index, datum in enumerate(data):
        y = MARGIN_TOP / 2 + index * ROW_HEIGHT + (ROW_HEIGHT - ROW_BAR) / 2
        length = room * max(datum.value, 0) / largest if largest else 0.0
        if datum.value > 0:
            length = max(length, 1.0)
        rows.append(Row(datum, round(y, 2), round(length, 2), round(y + ROW_BAR / 2, 2)))
    height = int(MARGIN_TOP + ROW_HEIGHT * max(len(data), 1))
    return HBarChart(WIDTH, height, left, rows, largest)
