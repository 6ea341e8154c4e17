"""The Runs screen: every run in the runs folder, live and past; open, resume, overlay.

The list comes from `RunClient.list_runs()` (the run folders; no Ray needed), read
in a thread worker on a timer and on F5; the worker only posts `RunsListed`, the
screen owns the table. Enter attaches in a worker and opens the run's Monitor,
which pages through the whole history before it follows live steps; an ended run
opens from its folder alone (read-only: nothing to stop) and starts no cluster.
`R` resumes a stopped or failed run from its newest checkpoint. `o` marks a run:
the next run opened draws the marked run's train loss and log-odds beside its own.

Times are shown in UTC from the run files' own timestamps; only a live run's
duration reads the clock (injectable, for snapshots).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from orpo_tui import preset as presets
from orpo_tui.job import store
from orpo_tui.job.records import FAILED, LIVE, RUNNING, STOPPED, SUCCEEDED, TERMINAL, MetricRecord, RunInfo
from orpo_tui.series import RunHistory
from orpo_tui.ui.commands import PaletteCommand
from orpo_tui.ui.widgets.panels import Overlay, format_duration, format_number

if TYPE_CHECKING:
    from orpo_tui.preset import Preset
    from orpo_tui.ui.app import OrpoApp

#: Seconds between re-reads of the run folders while the screen is shown.
REFRESH_S = 2.0
#: Width from which the table adds the slice and the full start date, and the run id.
MEDIUM_WIDTH, WIDE_WIDTH = 100, 140
#: Records per batch when reading an overlaid run's metrics.jsonl.
OVERLAY_BATCH = 10_000
#: Resume makes sense only from these (a live run is still going; a succeeded one is done).
RESUMABLE = frozenset({STOPPED, FAILED})

_STAMP = re.compile(r"^\d{8}-\d{6}-")


# ---------------------------------------------------------------- formatting (pure)

def short_run_name(run_id: str) -> str:
    """A run id without its date-time prefix: `20250101-120000-tiny-cpu-ab12` -> `tiny-cpu-ab12`."""
    return _STAMP.sub("", run_id) or run_id


def model_name(model: str) -> str:
    """A hub id as is; a local model folder by its last part."""
    if presets.is_local_path(model) or model.startswith("/"):
        return Path(model.rstrip("/")).name or model
    return model


def format_started(started: float, *, long: bool = True) -> str:
    """The start time in UTC (`2025-01-31 12:00`, or `01-31 12:00` when short)."""
    if not started or not math.isfinite(started) or started <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M" if long else "%m-%d %H:%M", time.gmtime(started))


def run_duration(info: RunInfo, now: float) -> float:
    """Seconds from start to end, or to `now` while the run is live; NaN when unknown."""
    if not info.started:
        return math.nan
    if info.ended:
        return info.ended - info.started
    return now - info.started if info.state in LIVE else math.nan


def format_steps(info: RunInfo) -> str:
    """`step/total`, with `?` while the total is not known yet."""
    return f"{info.step:,}/{info.total_steps:,}" if info.total_steps else f"{info.step:,}/?"


@dataclass(frozen=True)
class Column:
    """One column of the run table."""

    key: str
    label: str
    right: bool = False
    #: Shrinks (with an ellipsis) when the row does not fit.
    flex: bool = False
    max_width: int = 40


MARK = Column("mark", "")
STATE = Column("state", "State")
RUN = Column("run", "Run", flex=True, max_width=44)
PRESET = Column("preset", "Preset", flex=True, max_width=28)
MODEL = Column("model", "Model", flex=True, max_width=28)
SLICE = Column("slice", "Slice", max_width=12)
STEP = Column("step", "Step", right=True)
LOSS = Column("loss", "Loss", right=True)
STARTED = Column("started", "Started UTC")
DURATION = Column("duration", "Duration", right=True)
FLEX_MIN = 6


def columns_for(width: int) -> list[Column]:
    """The columns a table `width` cells wide shows (the detail line has the rest)."""
    cols = [MARK, STATE]
    if width >= WIDE_WIDTH:
        cols.append(RUN)
    cols += [PRESET, MODEL]
    if width >= MEDIUM_WIDTH:
        cols.append(SLICE)
    return cols + [STEP, LOSS, STARTED, DURATION]


def row_cells(info: RunInfo, *, now: float, long_dates: bool, marked: bool) -> dict[str, str]:
    """What each column shows for one run."""
    return {
        "mark": "◆" if marked else "",
        "state": info.state,
        "run": info.run_id,
        "preset": info.preset_name or "-",
        "model": model_name(info.model) if info.model else "-",
        "slice": info.accelerator or "-",
        "step": format_steps(info),
        "loss": format_number(info.last_loss, 4) if isinstance(info.last_loss, (int, float)) else "-",
        "started": format_started(info.started, long=long_dates),
        "duration": format_duration(run_duration(info, now)),
    }


def fit_widths(columns: list[Column], rows: list[dict[str, str]], available: int) -> list[int]:
    """Column widths (text only; each column adds one leading space) fitting `available` cells."""
    widths = [min(c.max_width, max([len(c.label), *(len(r[c.key]) for r in rows)])) for c in columns]
    over = sum(w + 1 for w in widths) - available
    while over > 0:
        flexible = [i for i, c in enumerate(columns) if c.flex and widths[i] > FLEX_MIN]
        if not flexible:
            break
        widest = max(flexible, key=lambda i: widths[i])
        widths[widest] -= 1
        over -= 1
    return widths


def clip(text: str, width: int) -> str:
    """`text` cut to `width` cells with an ellipsis."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


# ---------------------------------------------------------------- loading (worker side)

def load_run_preset(run_dir: Path) -> Preset | None:
    """The preset a run was launched with (`<run_dir>/preset.toml`); None if unreadable."""
    try:
        preset = presets.load(Path(run_dir) / "preset.toml", check=False)
    except presets.PresetError:
        return None
    preset.base_dir = None  # paths were made absolute at launch; not a file to save over
    return preset


def read_overlay(info: RunInfo) -> Overlay:
    """A run's metrics from its folder, as an Overlay (streamed in batches: runs can be long)."""
    history = RunHistory()
    batch: list[MetricRecord] = []
    for data in store.read_jsonl(Path(info.run_dir) / "metrics.jsonl"):
        batch.append(MetricRecord.from_json(data))
        if len(batch) >= OVERLAY_BATCH:
            history.add(batch)
            batch = []
    history.add(batch)
    return Overlay(short_run_name(info.run_id), history)


# ---------------------------------------------------------------- messages

@dataclass
class RunsListed(Message):
    """The run folders as just read (newest first)."""

    runs: list[RunInfo]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)  # only the newest listing matters


@dataclass
class ListFailed(Message):
    """The run folders could not be read (the error, in one line)."""

    error: str


@dataclass
class RunOpened(Message):
    """A run is attached (or resumed): show its monitor."""

    handle: Any
    preset: Preset | None
    info: RunInfo | None
    overlay: Overlay | None = None
    resumed: bool = False


@dataclass
class OpenFailed(Message):
    """Attaching to (or resuming) a run failed; `verb` says which."""

    run_id: str
    error: str
    verb: str = "Open"


# ---------------------------------------------------------------- the screen

class RunsTable(DataTable):
    """The run list; enter opens the highlighted run (and says so in the footer)."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", id="runs.open",
                        tooltip="Open the run's monitor: its whole history, then live (read-only once ended)")]


class RunsScreen(Screen[None]):
    """Live and past runs; open one (history, then live), resume, or overlay two."""

    CSS_PATH = "runs.tcss"
    HELP_TITLE = "Runs"
    AUTO_FOCUS = "#runs-table"
    BINDINGS = [
        # The table takes enter first (RunsTable); this entry is for the key list.
        Binding("enter", "open", "Open", id="runs.open-run", show=False,
                tooltip="Open the run's monitor: its whole history, then live (read-only once ended)"),
        Binding("R", "resume", "Resume", id="runs.resume",
                tooltip="Continue a stopped or failed run from its newest checkpoint"),
        Binding("o,space", "overlay", "Overlay", id="runs.overlay",
                tooltip="Mark this run (again to unmark): the next run opened draws its loss and "
                        "log-odds beside its own"),
        Binding("p", "preset", "Preset", id="runs.preset", tooltip="The preset the run was launched with"),
        Binding("f5", "refresh", "Refresh", id="runs.refresh",
                tooltip=f"Read the run folders again (also every {REFRESH_S:g} s)"),
        Binding("escape", "close", "Back", id="runs.close", tooltip="Back to Configure; runs go on"),
    ]

    runs: var[list[RunInfo]] = var(list, init=False, always_update=True)
    """The runs as last listed, newest first."""
    overlay_run: var[RunInfo | None] = var(None, init=False)
    """The run marked to be drawn beside the next one opened."""
    busy: var[str] = var("", init=False)
    """What an open/resume worker is doing (empty when idle)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, refresh_s: float = REFRESH_S,
                 name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.clock = clock
        self.refresh_s = refresh_s
        #: Listings applied (tests wait on this).
        self.listings = 0
        #: Why the last listing failed (empty when it worked).
        self.error = ""
        self._shown: tuple[Any, ...] | None = None
        self._row_ids: list[str] = []

    @property
    def orpo_app(self) -> OrpoApp:
        return cast("OrpoApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        yield RunsTable(id="runs-table", cursor_type="row", cell_padding=0, zebra_stripes=False)
        yield Static("", id="run-detail")
        yield Static("", id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._paint_title()
        self._paint_detail()
        self._paint_status()
        self.set_interval(self.refresh_s, self._tick, name="runs-refresh")
        self.action_refresh()

    def on_screen_resume(self) -> None:
        if self.listings:
            self.action_refresh()  # back from a monitor: states moved on meanwhile

    def on_resize(self) -> None:
        self._paint_table()

    def _tick(self) -> None:
        if self.is_current:
            self.action_refresh()

    # -- workers (post messages only) --

    def action_refresh(self) -> None:
        self._list_runs()

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _list_runs(self) -> None:
        try:
            runs = self.orpo_app.run_client().list_runs()
        except Exception as e:  # noqa: BLE001 - an unreadable folder is shown, the screen stays
            self.post_message(ListFailed(f"{type(e).__name__}: {e}"))
        else:
            self.post_message(RunsListed(runs))

    @work(thread=True, exclusive=True, group="runs-open", exit_on_error=False)
    def _open(self, info: RunInfo, overlay_of: RunInfo | None) -> None:
        try:
            # An ended run needs only its folder: no cluster is contacted (or started).
            handle = self.orpo_app.run_client().attach(info.run_id, connect=info.state not in TERMINAL)
            preset = load_run_preset(Path(info.run_dir or handle.run_dir))
            overlay = read_overlay(overlay_of) if overlay_of is not None else None
        except Exception as e:  # noqa: BLE001
            self.post_message(OpenFailed(info.run_id, f"{type(e).__name__}: {e}"))
        else:
            self.post_message(RunOpened(handle, preset, info, overlay))

    @work(thread=True, exclusive=True, group="runs-open", exit_on_error=False)
    def _resume(self, info: RunInfo) -> None:
        try:
            handle = self.orpo_app.run_client().resume(info.run_id)
            preset = load_run_preset(Path(info.run_dir or handle.run_dir))
        except Exception as e:  # noqa: BLE001
            self.post_message(OpenFailed(info.run_id, f"{type(e).__name__}: {e}", "Resume"))
        else:
            self.post_message(RunOpened(handle, preset, None, resumed=True))

    # -- state (UI thread) --

    @on(RunsListed)
    def _listed(self, message: RunsListed) -> None:
        self.error = ""
        self.listings += 1
        self.runs = message.runs
        marked = self.overlay_run
        if marked is not None:
            self.overlay_run = next((r for r in message.runs if r.run_id == marked.run_id), None)

    @on(ListFailed)
    def _list_failed(self, message: ListFailed) -> None:
        self.error = message.error
        self._paint_status()

    @on(RunOpened)
    def _opened(self, message: RunOpened) -> None:
        self.busy = ""
        screen = self.orpo_app.monitor_screen(message.handle, message.preset)
        if message.info is not None and hasattr(screen, "preload_info"):
            screen.preload_info(message.info)
        if message.overlay is not None and hasattr(screen, "set_overlay"):
            screen.set_overlay(message.overlay)
            if not len(message.overlay.history.train):
                self.notify(f"{message.overlay.label} has no train steps on disk yet: nothing to overlay.",
                            severity="warning")
        self.app.push_screen(screen)
        if message.resumed:
            self.notify(f"Resuming {message.handle.run_id} from its checkpoint.", title="Resumed")

    @on(OpenFailed)
    def _open_failed(self, message: OpenFailed) -> None:
        self.busy = ""
        self.notify(message.error, title=f"{message.verb} {message.run_id} failed", severity="error", timeout=10)

    def watch_runs(self) -> None:
        self._paint_title()
        self._paint_table()
        self._paint_detail()
        self.refresh_bindings()

    def watch_overlay_run(self) -> None:
        self._paint_table()
        self._paint_status()

    def watch_busy(self) -> None:
        self._paint_status()

    # -- drawing --

    def _paint_title(self) -> None:
        live = sum(1 for r in self.runs if r.state in LIVE)
        runs_dir = getattr(self.orpo_app.run_client_if_made(), "runs_dir", None)
        where = f"  {runs_dir}" if runs_dir else ""
        count = f"  {len(self.runs)} run{'s' * (len(self.runs) != 1)}" + (f", {live} live" if live else "")
        self.query_one("#title", Static).update(Content.assemble(
            ("orpo-tui", "bold"), " · ", ("Runs", "bold"), (where, "dim"), count))

    def _paint_table(self) -> None:
        if not self.is_mounted:
            return
        table = self.query_one(DataTable)
        width = max(20, self.size.width)
        columns = columns_for(width)
        marked = self.overlay_run.run_id if self.overlay_run else None
        now = self.clock()
        cells = [row_cells(r, now=now, long_dates=width >= MEDIUM_WIDTH, marked=r.run_id == marked)
                 for r in self.runs]
        widths = fit_widths(columns, cells, width - 2)  # room for a vertical scrollbar
        shown = (tuple(zip((c.key for c in columns), widths)),
                 tuple(tuple(c.values()) for c in cells), tuple(r.run_id for r in self.runs))
        if shown == self._shown:
            return
        self._shown = shown
        keep = self.highlighted_run()
        table.clear(columns=True)
        for col, w in zip(columns, widths):
            label = col.label.rjust(w) if col.right else col.label.ljust(w)
            table.add_column(Text(" " + label, style="bold"), key=col.key, width=w + 1)
        styles = self._state_styles()
        for info, row in zip(self.runs, cells):
            rendered = []
            for col, w in zip(columns, widths):
                text = clip(row[col.key], w)
                text = text.rjust(w) if col.right else text.ljust(w)
                style = ""
                if col.key == "state":
                    style = styles.get(info.state, "")
                elif col.key == "mark":
                    style = styles["mark"]
                rendered.append(Text(" " + text, style=style, no_wrap=True))
            table.add_row(*rendered, key=info.run_id)
        self._row_ids = [r.run_id for r in self.runs]
        if keep is not None and keep.run_id in self._row_ids:
            table.move_cursor(row=self._row_ids.index(keep.run_id), animate=False)

    def _state_styles(self) -> dict[str, str]:
        v = self.app.theme_variables
        ok, bad, warn, accent = (v.get(k, "") for k in ("text-success", "text-error", "text-warning", "text-accent"))
        styles = {SUCCEEDED: ok, FAILED: bad, STOPPED: "", RUNNING: f"bold {ok}", "mark": f"bold {accent}"}
        for state in LIVE - {RUNNING}:
            styles[state] = f"bold {warn}"
        return {k: s.strip() for k, s in styles.items()}

    def _paint_detail(self) -> None:
        detail = self.query_one("#run-detail", Static)
        info = self.highlighted_run()
        if info is None:
            runs_dir = getattr(self.orpo_app.run_client_if_made(), "runs_dir", None) or "the runs folder"
            detail.update(Content.assemble(
                ("No runs yet" if self.listings else "Reading the run folders…", "bold"),
                f" in {runs_dir}." if self.listings else "",
                ("\nesc goes back to Configure, where ctrl+r launches one." if self.listings else "", "dim")))
            return
        # The slice before the model: a long local model path is what gets cut.
        lines: list[Any] = [("run ", "dim"), (info.run_id, "bold"), ("  on ", "dim"), (info.accelerator or "?", ""),
                            ("  model ", "dim"), (info.model or "?", ""),
                            "\n", (info.run_dir or "", "dim")]
        if info.error:
            lines += ["\n", ("✗ " + info.error.splitlines()[0], "$text-error")]
        elif info.checkpoint:
            lines += ["\n", ("checkpoint ", "dim"), (info.checkpoint, "")]
        detail.update(Content.assemble(*lines))

    def _paint_status(self) -> None:
        status = self.query_one("#status", Static)
        if self.busy:
            status.update(Content.styled(self.busy, "$text-accent"))
        elif self.error:
            status.update(Content.assemble(("✗ cannot list runs: ", "$text-error bold"), self.error))
        elif self.overlay_run is not None:
            status.update(Content.assemble(
                ("◆ overlay ", "$text-accent bold"), (short_run_name(self.overlay_run.run_id), "bold"),
                ": open another run to draw it beside (o on it again unmarks)"))
        else:
            status.update(Content.styled("enter opens a run · R resumes a stopped one · o marks one to overlay",
                                         "dim"))

    @on(DataTable.RowHighlighted, "#runs-table")
    def _row_highlighted(self) -> None:
        self._paint_detail()
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self) -> None:
        self.action_open()

    # -- queries --

    def highlighted_run(self) -> RunInfo | None:
        """The run under the cursor."""
        if not self.is_mounted or not self._row_ids:
            return None
        table = self.query_one(DataTable)
        row = table.cursor_row
        if not 0 <= row < len(self._row_ids):
            return None
        run_id = self._row_ids[row]
        return next((r for r in self.runs if r.run_id == run_id), None)

    # -- actions --

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        info = self.highlighted_run() if self.is_mounted else None
        if action in ("open", "overlay", "preset"):
            return info is not None
        if action == "resume":
            return True if info is not None and info.state in RESUMABLE else None
        return True

    def action_open(self) -> None:
        info = self.highlighted_run()
        if info is None:
            return
        if self.busy:
            self.notify("Still opening the previous run.", severity="warning")
            return
        overlay = self.overlay_run if self.overlay_run and self.overlay_run.run_id != info.run_id else None
        self.busy = f"Opening {info.run_id}…"
        self._open(info, overlay)

    def action_resume(self) -> None:
        info = self.highlighted_run()
        if info is None or self.busy:
            return
        if info.state not in RESUMABLE:
            self.notify(f"{info.run_id} is {info.state}: only a stopped or failed run can be resumed.",
                        severity="warning")
            return
        self.busy = f"Resuming {info.run_id} from its checkpoint…"
        self._resume(info)

    def action_overlay(self) -> None:
        info = self.highlighted_run()
        if info is None:
            return
        if self.overlay_run is not None and self.overlay_run.run_id == info.run_id:
            self.overlay_run = None
        else:
            self.overlay_run = info

    def action_preset(self) -> None:
        from orpo_tui.ui.run_dialogs import PresetView

        info = self.highlighted_run()
        if info is None:
            return
        try:
            text = (Path(info.run_dir) / "preset.toml").read_text(encoding="utf-8")
        except OSError as e:
            self.notify(f"{info.run_id}: no preset.toml ({e.strerror or e})", severity="error")
            return
        self.app.push_screen(PresetView(f"Preset of {info.run_id}", text))

    def action_close(self) -> None:
        self.dismiss(None)

    def palette_commands(self) -> list[PaletteCommand]:
        """The Runs screen's actions for the command palette."""
        commands = [PaletteCommand("Runs: refresh", "Read the run folders again (key f5)", self.action_refresh)]
        info = self.highlighted_run()
        if info is not None:
            commands += [
                PaletteCommand(f"Runs: open {info.run_id}", "Its whole history, then live (enter)", self.action_open),
                PaletteCommand("Runs: mark for overlay", "Draw it beside the next run opened (key o)",
                               self.action_overlay),
                PaletteCommand("Runs: show preset", "The preset it was launched with (key p)", self.action_preset),
            ]
            if info.state in RESUMABLE:
                commands.append(PaletteCommand(f"Runs: resume {info.run_id}", "From its newest checkpoint (key R)",
                                               self.action_resume))
        return commands


__all__ = [
    "RunOpened", "RunsListed", "RunsScreen", "columns_for", "fit_widths", "format_started", "load_run_preset",
    "model_name", "read_overlay", "run_duration", "short_run_name",
]
