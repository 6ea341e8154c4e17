"""The monitor's panels: what each one plots from a RunHistory, and the run's readouts.

Panels read the history (owned by the screen) only when they draw; the screen
tells them when to, so a burst of records costs one redraw, not one per record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Log, Static

from orpo_tui.series import RunHistory
from orpo_tui.ui.widgets.plot import Plot, Trace, format_number

__all__ = [
    "ErrorPanel", "LogOddsPanel", "LogPanel", "LossPanel", "MetricPanel", "Overlay", "PanelTabs",
    "ProgressLine", "SeriesSpec", "ThroughputPanel", "format_duration", "format_number",
    "format_metric", "overlay_trace",
]

#: Palette colour of an overlaid run's curves (free in every overlaid plot).
OVERLAY_COLOR = 5


def format_duration(seconds: float) -> str:
    """h:mm:ss (with days beyond 24 h); "-" when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    text = f"{h}:{m:02d}:{s:02d}"
    return f"{days}d {text}" if days else text


def format_metric(name: str, value: float) -> str:
    """How a readout shows one quantity (tests format expected values with this too)."""
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if name == "reward_accuracy":
        return f"{value:.2f}"
    if name in ("real_tokens_per_s", "padded_tokens_per_s"):
        return format_number(value, 3)
    if name == "step_time":
        return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"
    if name == "learning_rate":
        return f"{value:.2e}"
    if name == "mfu":  # a fraction; tiny runs sit far below 1%
        return f"{value * 100:.3g}%"
    return format_number(value, 4)


@dataclass(frozen=True)
class SeriesSpec:
    """One plotted quantity: history column, legend label, palette colour."""

    column: str
    label: str
    color: int


def build_traces(history: RunHistory, specs: Sequence[SeriesSpec], points: int,
                 window: int | None = None) -> list[Trace]:
    """Train lines and eval markers for `specs`, downsampled to `points` across.

    `window` keeps only the last N train steps (and the evals among them).
    """
    train, ev = history.train, history.eval
    start = 0 if window is None else max(0, len(train) - window)
    eval_start = 0
    if start and len(ev):
        eval_start = int(np.searchsorted(ev.steps, train.steps[start], side="left"))
    traces: list[Trace] = []
    for spec in specs:
        v = train.view(spec.column, points, start)
        traces.append(Trace(spec.label, v.x, v.lo, v.hi, spec.color,
                            value=format_metric(spec.column, history.last(spec.column))))
    for spec in specs:
        if len(ev) > eval_start:
            v = ev.view(spec.column, points, eval_start)
            if np.isfinite(v.lo).any():
                traces.append(Trace(f"{spec.label} (eval)", v.x, v.lo, v.hi, spec.color,
                                    markers=True, legend=False))
    return traces


@dataclass(frozen=True)
class Overlay:
    """Another run drawn under this one's curves, to compare: its legend name and history."""

    label: str
    history: RunHistory


def overlay_trace(overlay: Overlay, column: str, points: int, main: RunHistory,
                  window: int | None = None) -> Trace:
    """The overlaid run's train `column`; with a window, from the main run's first shown step."""
    train = overlay.history.train
    start = 0
    if window is not None and len(main.train) > window:
        first_step = main.train.steps[len(main.train) - window]
        start = int(np.searchsorted(train.steps, first_step, side="left"))
    v = train.view(column, points, start)
    return Trace(overlay.label, v.x, v.lo, v.hi, OVERLAY_COLOR,
                 value=format_metric(column, overlay.history.last(column)))


class MetricPanel(Vertical):
    """A bordered panel of plots fed from the run's history."""

    ALLOW_MAXIMIZE = True

    PLOTS: tuple[tuple[str, tuple[SeriesSpec, ...]], ...] = ()
    #: Plot index -> the column an overlaid run draws there (see `Overlay`).
    OVERLAID: dict[int, str] = {}

    def __init__(self, history: RunHistory, *, title: str, id: str, classes: str = "panel"):
        super().__init__(id=id, classes=classes)
        self.history = history
        self.border_title = title
        self.window: int | None = None
        #: A second run to draw beside this one (None: just this run).
        self.overlay: Overlay | None = None

    def compose(self) -> ComposeResult:
        for i, (title, specs) in enumerate(self.PLOTS):
            yield Plot(self._source(specs, i), title=title, id=f"{self.id}-plot-{i}")

    def _source(self, specs: tuple[SeriesSpec, ...], index: int = -1):
        def traces(points: int) -> list[Trace]:
            out = build_traces(self.history, specs, points, self.window)
            column = self.OVERLAID.get(index)
            if column and self.overlay is not None and len(self.overlay.history.train):
                # Appended last, so drawn first: this run's own curves stay on top.
                out.append(overlay_trace(self.overlay, column, points, self.history, self.window))
            return out

        return traces

    def refresh_data(self) -> None:
        """New data: redraw (only what is on screen actually renders)."""
        for plot in self.query(Plot):
            plot.refresh_data()


class LossPanel(MetricPanel):
    # The odds-ratio term is a few percent of the total: on one axis it would be a flat line.
    PLOTS = (("loss", (SeriesSpec("loss", "total", 0), SeriesSpec("nll_loss", "nll", 1))),
             ("odds-ratio term", (SeriesSpec("odds_ratio_loss", "loss - nll", 2),)))
    OVERLAID = {0: "loss"}

    def refresh_data(self) -> None:
        lr = self.history.last("learning_rate")
        self.border_subtitle = f"lr {format_metric('learning_rate', lr)}" if lr == lr else ""
        super().refresh_data()


class LogOddsPanel(MetricPanel):
    PLOTS = (
        ("log-probs", (SeriesSpec("logps_chosen", "chosen", 2),
                       SeriesSpec("logps_rejected", "rejected", 5))),
        ("odds", (SeriesSpec("log_odds_chosen", "log-odds", 0),
                  SeriesSpec("log_odds_ratio", "logσ", 3),
                  SeriesSpec("reward_margin", "margin", 1),
                  SeriesSpec("reward_accuracy", "acc", 4))),
    )
    OVERLAID = {1: "log_odds_chosen"}


class ThroughputPanel(MetricPanel):
    PLOTS = (
        ("tokens/s", (SeriesSpec("real_tokens_per_s", "real", 2),
                      SeriesSpec("padded_tokens_per_s", "padded", 0))),
        ("step time (s)", (SeriesSpec("step_time", "step", 1),)),
    )

    peak_tflops: reactive[float | None] = reactive(None, init=False)
    """Peak TFLOP/s of the whole accelerator, for MFU; None when unknown."""

    def __init__(self, history: RunHistory, *, title: str, id: str, classes: str = "panel",
                 peak_tflops: float | None = None):
        super().__init__(history, title=title, id=id, classes=classes)
        self.set_reactive(ThroughputPanel.peak_tflops, peak_tflops)

    def compose(self) -> ComposeResult:
        yield Static(self._readout(), id=f"{self.id}-readout", classes="readout")
        yield from super().compose()

    def _readout(self) -> Content:
        tflops = self.history.last("tflops")
        real = self.history.last("real_tokens_per_s")
        padded = self.history.last("padded_tokens_per_s")
        peak = self.peak_tflops
        mfu = self.history.last("mfu")  # the engine's figure: the same on disk and headless
        if mfu != mfu:
            mfu = tflops / peak if peak and tflops == tflops else math.nan
        mfu_text = format_metric("mfu", mfu) if mfu == mfu else ("-" if peak else "n/a")
        parts = [("TFLOP/s ", "dim"), (format_number(tflops, 3), "bold"),
                 ("  MFU ", "dim"), (mfu_text, "bold")]
        if real == real and padded == padded and padded > 0:
            parts += [("  real/padded ", "dim"), (f"{real / padded:.0%}", "bold")]
        return Content.assemble(*parts)

    def refresh_data(self) -> None:
        self.query_one(".readout", Static).update(self._readout())
        super().refresh_data()


class LogPanel(Vertical, can_focus=False):
    """Tail of the trainer's log (bounded), with run events interleaved."""

    ALLOW_MAXIMIZE = True

    def __init__(self, *, title: str, id: str, classes: str = "panel", max_lines: int = 2000):
        super().__init__(id=id, classes=classes)
        self.border_title = title
        self.max_lines = max_lines

    def compose(self) -> ComposeResult:
        yield Log(max_lines=self.max_lines, auto_scroll=True, id=f"{self.id}-log")

    def write_lines(self, lines: Sequence[str]) -> None:
        if lines:
            self.query_one(Log).write_lines(list(lines)[-self.max_lines:])



class ErrorPanel(VerticalScroll, can_focus=True):
    """The error and traceback of a failed run."""

    ALLOW_MAXIMIZE = True

    def __init__(self, *, title: str, id: str, classes: str = "panel"):
        super().__init__(id=id, classes=classes)
        self.border_title = title

    def compose(self) -> ComposeResult:
        yield Static("", id=f"{self.id}-message", classes="error-message", markup=False)
        yield Static("", id=f"{self.id}-traceback", classes="error-traceback", markup=False)

    def show(self, message: str, traceback: str) -> None:
        self.query_one(".error-message", Static).update(message or "the run failed")
        self.query_one(".error-traceback", Static).update(traceback or "(no traceback)")


class ProgressLine(Widget):
    """step / total with a bar, epoch, elapsed and ETA, sized to the line."""

    DEFAULT_CSS = """
    ProgressLine { height: 1; width: 1fr; }
    ProgressLine > .progress--bar { color: $success; }
    ProgressLine > .progress--rest { color: $foreground 20%; }
    ProgressLine > .progress--dim { color: $foreground-muted; }
    """
    COMPONENT_CLASSES = {"progress--bar", "progress--rest", "progress--dim"}

    step: reactive[int] = reactive(0)
    """Latest train step."""
    total: reactive[int] = reactive(0)
    """Total steps (0 when unknown)."""
    epoch: reactive[float] = reactive(math.nan)
    """Fractional epoch of the latest step."""
    elapsed: reactive[float] = reactive(math.nan)
    """Seconds from the run's start to its latest record."""
    eta: reactive[float] = reactive(math.nan)
    """Seconds left at the recent step rate."""
    window: reactive[str] = reactive("")
    """What the plots show, when not the whole history."""

    def render(self) -> Content:
        dim = self.get_component_rich_style("progress--dim", partial=True)
        dim_style = str(dim) if dim else "dim"
        total = self.total
        step_text = f"step {self.step:,}" + (f"/{total:,}" if total else "")
        tail: list[tuple[str, str]] = []
        if self.epoch == self.epoch:
            tail += [("  epoch ", dim_style), (f"{self.epoch:.2f}", "")]
        tail += [("  elapsed ", dim_style), (format_duration(self.elapsed), "")]
        if total:
            tail += [("  ETA ", dim_style), (format_duration(self.eta), "")]
        used = len(step_text) + sum(len(t) for t, _ in tail)
        # At small sizes the tab strip shows the window instead.
        if self.window and used + 2 + len(self.window) + 5 <= self.size.width:
            tail += [("  ", ""), (self.window, dim_style)]
            used += 2 + len(self.window)
        parts: list[tuple[str, str]] = [(step_text, "bold")]
        if total:
            frac = min(1.0, max(0.0, self.step / total))
            pct = f" {frac:4.0%}"
            bar_w = self.size.width - used - len(pct) - 1
            if bar_w >= 8:
                done = int(round(frac * bar_w))
                bar = self.get_component_rich_style("progress--bar", partial=True)
                rest = self.get_component_rich_style("progress--rest", partial=True)
                parts += [(" ", ""), ("━" * done, str(bar) if bar else ""),
                          ("━" * (bar_w - done), str(rest) if rest else "dim")]
            parts.append((pct, ""))
        return Content.assemble(*parts, *tail)


class PanelTabs(Static):
    """One-line tab strip: which panel the keys 1..5 show at small sizes."""

    def __init__(self, labels: Sequence[tuple[str, str]], *, id: str | None = None):
        super().__init__("", id=id)
        self.labels = list(labels)
        self.active = labels[0][0] if labels else ""
        self.hidden: set[str] = set()
        self.note = ""

    def on_mount(self) -> None:
        self._paint()

    def set_active(self, key: str) -> None:
        self.active = key
        self._paint()

    def set_hidden(self, hidden: set[str]) -> None:
        self.hidden = set(hidden)
        self._paint()

    def set_note(self, note: str) -> None:
        self.note = note
        self._paint()

    def _paint(self) -> None:
        parts: list[tuple[str, str] | str] = []
        for i, (key, label) in enumerate(self.labels, 1):
            if key in self.hidden:
                continue
            style = "reverse bold" if key == self.active else ""
            parts += [(f" {i} ", f"bold {style}".strip()), (f"{label} ", style), " "]
        if self.note:
            parts += [" ", (self.note, "italic")]
        self.update(Content.assemble(*parts))

