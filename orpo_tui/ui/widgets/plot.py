"""A braille line plot: several series, markers, a legend and y-axis labels.

Self-contained (numpy and Textual only). The plot asks its `source` for the
traces to draw, telling it how many points fit across (two per cell), so the
caller can hand over an already downsampled view; rasterising is vectorised
and costs O(width x height) whatever the length of the history behind it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

#: Braille dot bits by (row, column) within a cell: U+2800 + bits.
_BRAILLE = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], np.uint16)
PALETTE_SIZE = 6
LINE_GLYPH = "━"
MARKER_GLYPH = "◆"


@dataclass(frozen=True)
class Trace:
    """One series to draw: bucket i sits at x[i] and spans values lo[i]..hi[i].

    `x` must not decrease. NaN values leave a gap in the buckets but not in the line.
    """

    label: str
    x: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    color: int = 0
    #: Draw a marker per point (sparse series such as eval) instead of a line.
    markers: bool = False
    #: Latest value, shown beside the label in the legend.
    value: str = ""
    legend: bool = True


def format_number(value: float, digits: int = 4) -> str:
    """Compact human form: `digits` significant digits, k/M/G/T past 10,000, "-" for NaN."""
    if value is None or not math.isfinite(value):
        return "-"
    a = abs(value)
    units = ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T"))
    if a >= 1e4:
        for i, (scale, suffix) in enumerate(units):
            scaled = value / scale
            if abs(scaled) >= 1000 and i + 1 < len(units):
                continue
            decimals = max(0, digits - len(str(int(abs(scaled)))))
            text = f"{scaled:.{decimals}f}"
            if abs(float(text)) >= 1000 and i + 1 < len(units):
                continue  # 999,999 rounds to 1000k: say 1M
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return text + suffix
    if a >= 1:
        return f"{value:.{max(0, digits - len(str(int(a))))}f}"
    if a != 0 and a < 1e-3:
        return f"{value:.{max(1, digits - 2)}e}"
    return f"{value:.{digits}g}"


def _axis_labels(lo: float, hi: float) -> tuple[str, str, str]:
    """Labels for the top, middle and bottom rows with just enough decimals to differ."""
    span = hi - lo
    mid = (lo + hi) / 2
    big = max(abs(lo), abs(hi))
    if big >= 1e4 or (big and big < 1e-3):
        return format_number(hi, 3), format_number(mid, 3), format_number(lo, 3)
    decimals = 0 if span <= 0 else max(0, min(6, 2 - math.floor(math.log10(span))))
    return f"{hi:.{decimals}f}", f"{mid:.{decimals}f}", f"{lo:.{decimals}f}"


def _x_label(value: float) -> str:
    """Steps in full while they fit (199,500 tells more than 200k), then SI."""
    if float(value).is_integer():
        text = f"{value:,.0f}"
        return text if len(text) <= 9 else format_number(value, 4)
    return f"{value:.3g}"


class Plot(Widget):
    """Line plot of several traces in braille dots, with legend and axes."""

    DEFAULT_CSS = """
    Plot {
        height: 1fr;
        min-height: 4;
        width: 1fr;
    }
    Plot > .plot--axis { color: $foreground-muted; }
    Plot > .plot--title { color: $foreground; text-style: bold; }
    Plot > .plot--label { color: $foreground; }
    Plot > .plot--empty { color: $foreground-muted; text-style: italic; }
    Plot > .plot--series-0 { color: #4ea1ff; }
    Plot > .plot--series-1 { color: #ffa62b; }
    Plot > .plot--series-2 { color: #5fd787; }
    Plot > .plot--series-3 { color: #d787d7; }
    Plot > .plot--series-4 { color: #e8d44d; }
    Plot > .plot--series-5 { color: #ff6b6b; }
    """

    COMPONENT_CLASSES = {
        "plot--axis", "plot--title", "plot--label", "plot--empty",
        *(f"plot--series-{i}" for i in range(PALETTE_SIZE)),
    }

    def __init__(self, source: Callable[[int], Sequence[Trace]] | None = None, *,
                 title: str = "", empty_text: str = "waiting for metrics…",
                 name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.source = source
        self.title = title
        self.empty_text = empty_text
        self._strips: list[Strip] | None = None
        self._strips_size: tuple[int, int] = (0, 0)
        #: Traces drawn last time (for tests and readouts).
        self.last_traces: Sequence[Trace] = ()

    # -- public --

    def refresh_data(self) -> None:
        """The source has new data: draw afresh when next shown."""
        self._strips = None
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None

    def render_line(self, y: int) -> Strip:
        size = (self.size.width, self.size.height)
        if self._strips is None or self._strips_size != size:
            self._strips = self._draw(*size)
            self._strips_size = size
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(size[0], self.rich_style)

    # -- drawing --

    def _styles(self) -> tuple[Style, Style, Style, Style, Style, list[Style]]:
        get = self.get_component_rich_style
        return (self.rich_style, get("plot--axis"), get("plot--title"), get("plot--label"),
                get("plot--empty"), [get(f"plot--series-{i}") for i in range(PALETTE_SIZE)])

    def _legend(self, traces: Sequence[Trace], width: int, max_rows: int,
                title_style: Style, label_style: Style, series: list[Style]) -> list[list[Segment]]:
        items: list[list[Segment]] = []
        if self.title:
            items.append([Segment(self.title, title_style)])
        eval_color = None
        for t in traces:
            if t.markers:
                if eval_color is None and len(t.x):
                    eval_color = t.color
                continue
            if not t.legend:
                continue
            text = f" {t.label}" + (f" {t.value}" if t.value else "")
            items.append([Segment(LINE_GLYPH, series[t.color % PALETTE_SIZE]),
                          Segment(text, label_style)])
        if eval_color is not None:
            items.append([Segment(MARKER_GLYPH, label_style), Segment(" eval", label_style)])
        rows: list[list[Segment]] = []
        row: list[Segment] = []
        used = 0
        for item in items:
            w = sum(len(s.text) for s in item)
            gap = 2 if row else 0
            if row and used + gap + w > width:
                rows.append(row)
                if len(rows) == max_rows:
                    return rows
                row, used, gap = [], 0, 0
            if gap:
                row.append(Segment("  ", label_style))
            row.extend(item)
            used += gap + w
        if row and len(rows) < max_rows:
            rows.append(row)
        return rows

    def _draw(self, width: int, height: int) -> list[Strip]:
        base, axis, title_style, label_style, empty_style, series = self._styles()
        line_styles = series + [style + Style(dim=True) for style in series]
        blank = Strip.blank(width, base)
        if width <= 0 or height <= 0:
            return []

        def line(segments: list[Segment]) -> Strip:
            return Strip(segments).adjust_cell_length(width, base)

        guess_label = 7
        points = max(2, (width - guess_label - 1) * 2)
        traces = list(self.source(points)) if self.source else []
        self.last_traces = traces
        legend = self._legend(traces, width, 2 if height >= 9 else 1,
                              title_style, label_style, series)
        strips = [line(r) for r in legend]
        rows_left = height - len(strips)
        finite = [t for t in traces if len(t.x)]
        # The y range from finite values only: one inf (a diverged step) must not flatten it.
        los = [t.lo[np.isfinite(t.lo)].min() for t in finite if np.isfinite(t.lo).any()]
        his = [t.hi[np.isfinite(t.hi)].max() for t in finite if np.isfinite(t.hi).any()]
        if not los or rows_left < 2 or width < 12:
            msg = self.empty_text if not los else ""
            for i in range(rows_left):
                if msg and i == rows_left // 2:
                    strips.append(line([Segment(msg.center(width)[:width], empty_style)]))
                else:
                    strips.append(blank)
            return strips

        ymin, ymax = float(min(los)), float(max(his))
        if ymax - ymin <= abs(ymax) * 1e-9:
            pad = abs(ymax) * 0.05 or 1.0
            ymin, ymax = ymin - pad, ymax + pad
        xs = [t.x[np.isfinite(t.x)] for t in finite]
        xmin = float(min(x.min() for x in xs if len(x)))
        xmax = float(max(x.max() for x in xs if len(x)))

        top, mid, bottom = _axis_labels(ymin, ymax)
        label_w = max(len(top), len(mid), len(bottom))
        ph = rows_left - 1  # the last row is the x axis
        pw = width - label_w - 1
        if pw < 4:
            return strips + [blank] * rows_left
        py, px = ph * 4, pw * 2

        def to_px(x: np.ndarray) -> np.ndarray:
            if xmax == xmin:
                return np.full(len(x), (px - 1) / 2)
            return (x - xmin) / (xmax - xmin) * (px - 1)

        def to_py(y: np.ndarray) -> np.ndarray:
            return (ymax - y) / (ymax - ymin) * (py - 1)

        codes = np.zeros((ph, pw), np.uint16)
        owner = np.full((ph, pw), -1, np.int16)
        marks: list[tuple[np.ndarray, np.ndarray, int]] = []
        # Earlier traces are drawn last so they end up on top.
        for t in reversed(finite):
            color = t.color % PALETTE_SIZE
            xp = to_px(np.asarray(t.x, np.float64))
            lo = to_py(np.asarray(t.lo, np.float64))  # row of the minimum: the lower dot
            hi = to_py(np.asarray(t.hi, np.float64))
            ok = np.isfinite(xp) & np.isfinite(lo) & np.isfinite(hi)
            if t.markers and ok.sum() <= pw // 3:
                cx = (np.rint(xp[ok]) // 2).astype(int).clip(0, pw - 1)
                cy = (np.rint((lo[ok] + hi[ok]) / 2) // 4).astype(int).clip(0, ph - 1)
                marks.append((cy, cx, color))
                continue
            # Markers too many to tell apart become a dim line of the same colour.
            mask = _raster_line(xp, lo, hi, px, py)
            if mask is None:
                continue
            bits = (mask.reshape(ph, 4, pw, 2) * _BRAILLE[None, :, None, :]).sum(axis=(1, 3))
            codes |= bits.astype(np.uint16)
            owner[bits > 0] = color + (PALETTE_SIZE if t.markers else 0)
        chars = [[chr(c) for c in row] for row in np.where(codes > 0, codes + 0x2800, 0x20).tolist()]
        for cy, cx, color in marks:
            owner[cy, cx] = color
            for y, x in zip(cy.tolist(), cx.tolist()):
                chars[y][x] = MARKER_GLYPH
        owners = owner.tolist()

        tick_rows = {0: top, ph - 1: bottom}
        if ph >= 5:
            tick_rows[(ph - 1) // 2] = mid
        for r in range(ph):
            label = tick_rows.get(r)
            segs = [Segment((label or "").rjust(label_w), axis),
                    Segment("┤" if label is not None else "│", axis)]
            row_chars = chars[r]
            row_owner = owners[r]
            start = 0
            for c in range(1, pw + 1):
                if c == pw or row_owner[c] != row_owner[start]:
                    o = row_owner[start]
                    segs.append(Segment("".join(row_chars[start:c]), base if o < 0 else line_styles[o]))
                    start = c
            strips.append(line(segs))
        strips.append(line(self._x_axis(label_w, pw, xmin, xmax, axis)))
        return strips

    @staticmethod
    def _x_axis(label_w: int, pw: int, xmin: float, xmax: float, style: Style) -> list[Segment]:
        ruler = ["─"] * pw
        labels = [(0, _x_label(xmin))]
        if xmax != xmin:
            right = _x_label(xmax)
            labels.append((pw - len(right), right))
            middle = _x_label(round((xmin + xmax) / 2))
            at = (pw - len(middle)) // 2
            if at > len(labels[0][1]) + 2 and at + len(middle) + 2 < pw - len(right):
                labels.append((at, middle))
        for at, text in labels:
            for i, ch in enumerate(text):
                if 0 <= at + i < pw:
                    ruler[at + i] = ch
        return [Segment(" " * label_w + "└" + "".join(ruler), style)]


def _raster_line(xp: np.ndarray, lo: np.ndarray, hi: np.ndarray, px: int, py: int) -> np.ndarray | None:
    """Dots of a connected line through bucket centres, each bucket spanning lo..hi (rows)."""
    ok = np.isfinite(xp) & np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return None
    xp, lo, hi = xp[ok], lo[ok], hi[ok]
    centre = (lo + hi) / 2
    xi = np.rint(xp).astype(np.int64).clip(0, px - 1)
    c0, c1 = int(xi.min()), int(xi.max())
    cols = np.arange(c0, c1 + 1)
    # np.interp needs increasing x; equal x (several buckets in one column) is fine.
    y = np.interp(cols, xp, centre) if len(xp) > 1 else np.full(len(cols), centre[0])
    prev = np.concatenate(([y[0]], y[:-1]))
    nxt = np.concatenate((y[1:], [y[-1]]))
    # Each column covers the line from halfway to its left neighbour to halfway to its right.
    top = np.minimum(y, np.minimum((y + prev) / 2, (y + nxt) / 2))
    bottom = np.maximum(y, np.maximum((y + prev) / 2, (y + nxt) / 2))
    top_i = np.rint(top).astype(np.int64)
    bottom_i = np.rint(bottom).astype(np.int64)
    np.minimum.at(top_i, xi - c0, np.rint(hi).astype(np.int64))
    np.maximum.at(bottom_i, xi - c0, np.rint(lo).astype(np.int64))
    rows = np.arange(py)[:, None]
    mask = np.zeros((py, px), bool)
    mask[:, c0:c1 + 1] = (rows >= top_i.clip(0, py - 1)) & (rows <= bottom_i.clip(0, py - 1))
    return mask
