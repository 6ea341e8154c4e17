"""The Monitor: one run streamed live — loss, log-odds, throughput, progress, log, errors.

Data flow (house style): a thread worker loops `handle.poll()` and posts
`UpdateArrived`; the `@on` handler owns all state and appends into the run's
`RunHistory`; widgets are never touched from the worker. Two things keep a fast
stream from flooding the UI: the worker posts one update at a time and merges
whatever arrives meanwhile into the next (so a lagging UI gets fewer, bigger
updates, nothing lost), and panels redraw from a timer at most every
REDRAW_INTERVAL seconds when something changed, never once per record.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.events import Mount
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Label, Log, Static
from textual.worker import get_current_worker

from orpo_tui import accelerators
from orpo_tui.job.records import LIVE, STOPPED, SUCCEEDED, RunInfo, Update
from orpo_tui.series import RunHistory
from orpo_tui.ui.commands import PaletteCommand
from orpo_tui.ui.widgets.alerts import AlertsPanel, is_error_alert
from orpo_tui.ui.widgets.panels import (
    ErrorPanel, LogOddsPanel, LogPanel, LossPanel, PanelTabs, ProgressLine, ThroughputPanel,
    format_number,
)

#: Seconds a poll blocks at most: also how soon the worker notices it should stop.
POLL_TIMEOUT = 0.5
#: Back-off after a failed poll: RETRY_S more per failure in a row, at most RETRY_MAX_S.
RETRY_S, RETRY_MAX_S = 0.5, 5.0
#: Panels redraw at most this often while data streams in.
REDRAW_INTERVAL = 0.08
#: Below this size panels are shown one at a time (keys 1..5); at or above, all at once.
WIDE_MIN_WIDTH, WIDE_MIN_HEIGHT = 140, 40
#: Plot windows `w` cycles through: the whole history, then the last N train steps.
WINDOWS: tuple[int | None, ...] = (None, 10_000, 1_000, 100)
LOG_LINES = 2000
#: Records the worker holds for a busy UI before it stops polling until the UI catches up.
MAX_BACKLOG_RECORDS = 20_000
#: Health alerts that pop up as notifications from one update; the rest are counted in one more.
MAX_ALERT_TOASTS = 3
#: The footer shows the panel keys as one group: "12345 Panel".
PANEL_KEYS = Binding.Group("Panel", compact=True)

PANELS: tuple[tuple[str, str], ...] = (
    ("loss", "Loss"), ("logodds", "Log-odds"), ("throughput", "Throughput"),
    ("log", "Log"), ("error", "Error"),
)


class RunHandleLike(Protocol):
    """What the monitor needs of `orpo_tui.job.client.RunHandle`."""

    run_id: str

    def poll(self, timeout: float = 0.5) -> Update: ...

    def stop(self) -> None: ...


@dataclass
class UpdateArrived(Message):
    """What the run reported since the last message: one poll's update, or several, oldest
    first, when they piled up while the UI was busy."""

    updates: list[Update]

    @property
    def update(self) -> Update:
        """All of them as one update (latest info; records, logs and events concatenated)."""
        merged: Update | None = None
        for part in self.updates:
            merged = merge_updates(merged, part)
        assert merged is not None
        return merged


@dataclass
class PollFailed(Message):
    """A poll raised: the run is unreachable for now (the worker keeps trying)."""

    error: str


@dataclass
class StopFailed(Message):
    """`handle.stop()` raised."""

    error: str


def merge_updates(first: Update | None, then: Update) -> Update:
    """One update holding `first` followed by `then` (latest info and cursors win)."""
    if first is None:
        return then
    return Update(then.info, first.metrics + then.metrics, first.logs + then.logs,
                  first.events + then.events, then.metric_cursor, then.log_cursor,
                  then.event_cursor)


def _is_empty(update: Update) -> bool:
    return not (update.metrics or update.logs or update.events)


def format_event(event: dict[str, Any]) -> str:
    """One log line for a run event."""
    kind = str(event.get("kind", "event"))
    message = event.get("message")
    if message is None:
        rest = {k: v for k, v in event.items() if k not in ("kind", "time", "traceback")}
        message = json.dumps(rest, sort_keys=True, default=str) if rest else ""
    return f"▸ {kind}: {message}" if message else f"▸ {kind}"


class StopConfirm(ModalScreen[bool]):
    """Ask before stopping a run: the trainer writes a checkpoint, then stops."""

    CSS_PATH = "monitor.tcss"

    BINDINGS = [
        Binding("y", "answer(True)", "Stop run", id="stop-confirm.yes",
                tooltip="Write a checkpoint, then stop the run"),
        Binding("n,escape", "answer(False)", "Keep running", id="stop-confirm.no",
                tooltip="Close this and let the run go on"),
    ]

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        with Vertical(id="stop-dialog"):
            yield Label(Content.assemble("Stop run ", (self.run_id, "bold"), "?"), id="stop-title")
            yield Static("The trainer saves a checkpoint first, then stops. "
                         "It can be resumed from that checkpoint.", id="stop-help")
            with Horizontal(id="stop-buttons"):
                yield Button("Stop (y)", variant="error", id="stop-yes")
                yield Button("Keep running (n)", variant="default", id="stop-no")

    def on_mount(self) -> None:
        self.query_one("#stop-no", Button).focus()

    @on(Button.Pressed, "#stop-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#stop-no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class MonitorScreen(Screen[None]):
    """Live view of one run, fed by a RunHandle polled in a thread worker."""

    CSS_PATH = "monitor.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_MIN_WIDTH, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (WIDE_MIN_HEIGHT, "-tall")]

    BINDINGS = [
        *(Binding(str(i), f"show_panel('{key}')", label, group=PANEL_KEYS,
                  id=f"monitor.panel.{key}", tooltip=f"Show the {label} panel")
          for i, (key, label) in enumerate(PANELS, 1)),
        Binding("s", "stop", "Stop", id="monitor.stop",
                tooltip="Stop the run gracefully: checkpoint first (asks to confirm)"),
        Binding("z", "zoom", "Zoom", id="monitor.zoom",
                tooltip="Fill the screen with the focused panel; again to restore"),
        Binding("w", "window", "Window", id="monitor.window",
                tooltip="Plot the whole history or only the last 10k / 1k / 100 steps"),
        Binding("p", "show_preset", "Preset", id="monitor.preset", show=False,
                tooltip="The preset the run was launched with"),
        Binding("escape", "close", "Back", id="monitor.close",
                tooltip="Leave the monitor; the run goes on"),
    ]

    active_panel: reactive[str] = reactive("loss", init=False)
    """The panel shown at small sizes (all are shown at large ones)."""
    state: reactive[str] = reactive("", init=False)
    """The run's state as last reported."""

    def __init__(self, handle: RunHandleLike, preset: Any = None, *, name: str | None = None,
                 id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.handle = handle
        self.preset = preset
        self.history = RunHistory()
        self.info: RunInfo | None = None
        self.error: tuple[str, str] | None = None
        self.stop_requested = False
        self.connection_error = ""
        self.window_index = 0
        #: True once the run ended and its last update is drawn (tests wait on this).
        self.drained = False
        #: Polls' updates applied, and the messages that carried them (fewer when coalesced).
        self.updates_applied = 0
        self.messages_applied = 0
        self._dirty = False
        self._painted: tuple[str, ...] = ()
        self._pending_log: list[str] = []
        self._consumed = threading.Event()
        self._consumed.set()
        self._poll_stop = threading.Event()
        self.peak_tflops = self._peak(preset)

    @staticmethod
    def _peak(preset: Any) -> float | None:
        acc = getattr(preset, "accelerator", None)
        if acc is None:
            return None
        try:
            return accelerators.peak_tflops(acc.kind, acc.type, acc.count)
        except Exception:  # an odd preset must not take the monitor down
            return None

    # -- layout --

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-bar"):
            yield Static(self._title_text(), id="run-title", markup=False)
            yield Static("", id="run-state")
        yield ProgressLine(id="progress")
        yield PanelTabs(PANELS, id="tabs")
        with Container(id="panels"):
            yield LossPanel(self.history, title="1 Loss", id="loss", classes="panel -active")
            yield LogOddsPanel(self.history, title="2 Log-odds", id="logodds")
            yield ThroughputPanel(self.history, title="3 Throughput", id="throughput",
                                  peak_tflops=self.peak_tflops)
            yield LogPanel(title="4 Log", id="log", max_lines=LOG_LINES)
            yield ErrorPanel(title="5 Error", id="error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PanelTabs).set_hidden({"error"})
        self._paint_state()
        self.set_interval(REDRAW_INTERVAL, self._flush, name="monitor-redraw")
        self._poll_run()

    def on_unmount(self) -> None:
        self._poll_stop.set()
        self.workers.cancel_group(self, "monitor-poll")

    # -- the worker --

    @work(thread=True, exclusive=True, group="monitor-poll", exit_on_error=False)
    def _poll_run(self) -> None:
        worker = get_current_worker()
        pending: list[Update] = []
        backlog = 0  # records in `pending`
        posted_state = ""
        failures = 0
        while not worker.is_cancelled and not self._poll_stop.is_set():
            try:
                # While an update waits for the UI, poll briefly so it goes out soon.
                update = self.handle.poll(timeout=0.05 if pending else POLL_TIMEOUT)
            except Exception as exc:  # unreachable for now: say so, back off, try again
                failures += 1
                self.post_message(PollFailed(f"{type(exc).__name__}: {exc}"))
                if self._poll_stop.wait(min(RETRY_MAX_S, RETRY_S * failures)):
                    return
                continue
            failures = 0
            if not _is_empty(update) or update.state != posted_state or update.done:
                pending.append(update)
                posted_state = update.state
            if update.done:
                self.post_message(UpdateArrived(pending))
                return
            backlog += len(update.metrics)
            if backlog >= MAX_BACKLOG_RECORDS:
                # The UI is far behind: let it catch up before asking the run for more,
                # so memory stays bounded (the run keeps what we have not fetched).
                while not self._consumed.wait(POLL_TIMEOUT):
                    if worker.is_cancelled or self._poll_stop.is_set():
                        return
            # One message in flight at a time; what arrives meanwhile goes out with the next.
            if pending and self._consumed.is_set():
                self._consumed.clear()
                self.post_message(UpdateArrived(pending))
                pending, backlog = [], 0

    @work(thread=True, exclusive=True, group="monitor-stop", exit_on_error=False)
    def _send_stop(self) -> None:
        try:
            self.handle.stop()
        except Exception as exc:
            self.post_message(StopFailed(f"{type(exc).__name__}: {exc}"))

    # -- state (owned here, on the UI thread) --

    @on(UpdateArrived)
    def _apply_update(self, message: UpdateArrived) -> None:
        parts = message.updates
        last = parts[-1]
        self.info = last.info
        self.connection_error = ""
        records = [r for part in parts for r in part.metrics]
        if records:
            self.history.add(records)
        for part in parts:
            # Order within one update is unknown: a final state's events are put after
            # its logs (they end the run), other events before.
            if not part.done:
                self._take_events(part)
            self._pending_log.extend(part.logs)
            if part.done:
                self._take_events(part)
        if len(self._pending_log) > 2 * LOG_LINES:  # the log keeps only LOG_LINES anyway
            del self._pending_log[:-LOG_LINES]
        if last.info.error and self.error is None:
            self._set_error(last.info.error, "")
        self.state = last.state
        self.updates_applied += len(parts)
        self.messages_applied += 1
        self._dirty = True
        self._consumed.set()
        if last.done:
            self._flush()
            self.drained = True

    @property
    def settled(self) -> bool:
        """Nothing received is waiting to be drawn."""
        return not self._dirty and self._consumed.is_set()

    def _take_events(self, update: Update) -> None:
        for event in update.events:
            self._pending_log.append(format_event(event))
            if event.get("kind") == "error":
                self._set_error(str(event.get("message") or update.info.error or "the run failed"),
                                str(event.get("traceback") or ""))
        alerts = [event for event in update.events if event.get("kind") == "alert"]
        if alerts:
            self._show_alerts(alerts)

    def _show_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Health alerts: a notification each (a few at most), and the alerts strip above the panels."""
        try:
            strip = self.query_one("#alerts", AlertsPanel)
        except NoMatches:  # the first alert of the run: the strip takes room only from now on
            strip = AlertsPanel(id="alerts")
            self.mount(strip, before="#panels")
        strip.add(alerts)
        for event in alerts[:MAX_ALERT_TOASTS]:
            self.notify(str(event.get("message") or event.get("alert")),
                        title=f"Health alert · step {event.get('step', '?')}",
                        severity="error" if is_error_alert(event) else "warning", timeout=10)
        if len(alerts) > MAX_ALERT_TOASTS:
            self.notify(f"{len(alerts) - MAX_ALERT_TOASTS} more health alerts: see the alerts strip and the Log",
                        title="Health alerts", severity="warning", timeout=10)

    @on(PollFailed)
    def _poll_failed(self, message: PollFailed) -> None:
        self.connection_error = message.error
        self._paint_state()

    @on(StopFailed)
    def _stop_failed(self, message: StopFailed) -> None:
        self.stop_requested = False
        self.notify(message.error, title="Stop failed", severity="error")
        self.refresh_bindings()
        self._paint_state()

    def _set_error(self, message: str, traceback: str) -> None:
        first = self.error is None
        self.error = (message, traceback)
        self.query_one(ErrorPanel).show(message, traceback)
        self.add_class("-has-error")
        self.query_one(PanelTabs).set_hidden(set())
        self.refresh_bindings()
        if first:
            self.active_panel = "error"
            # Focused, so the arrow keys scroll a long traceback straight away.
            self.call_after_refresh(self._focus_panel, "error")

    def watch_state(self, state: str) -> None:
        self.refresh_bindings()
        self._paint_state()

    # -- drawing --

    def _flush(self) -> None:
        """Redraw what changed since the last flush (called by the timer, and at the end)."""
        if not self._dirty:
            return
        self._dirty = False
        self._paint_state()
        self._paint_progress()
        for panel in self.query(".panel"):
            refresh = getattr(panel, "refresh_data", None)
            if refresh is not None:
                refresh()
        if self._pending_log:
            self.query_one(LogPanel).write_lines(self._pending_log)
            self._pending_log = []

    def _title_text(self) -> str:
        info = self.info
        run_id = getattr(self.handle, "run_id", "") or (info.run_id if info else "")
        parts = [f"run {run_id}"]
        preset_name = (info.preset_name if info else "") or getattr(self.preset, "name", "")
        if preset_name:
            parts.append(preset_name)
        if info and info.model:
            parts.append(info.model)
        if info and info.accelerator:
            parts.append(info.accelerator)
        if info and info.checkpoint and self.state in (STOPPED, SUCCEEDED):
            parts.append(f"checkpoint {info.checkpoint}")
        return " │ ".join(parts)

    def _paint_state(self) -> None:
        if not self.is_mounted:
            return
        state = self.state or "connecting"
        label = state
        if self.stop_requested and state in LIVE and state != "stopping":
            label = "stop requested"
        if self.connection_error:
            label = f"{label} · unreachable"
        painted = (state, label, self._title_text(), self.connection_error)
        if painted == self._painted:  # the timer calls this often; restyling is not free
            return
        self._painted = painted
        badge = self.query_one("#run-state", Static)
        badge.update(f" ● {label.upper()} ")
        for cls in list(badge.classes):
            if cls.startswith("-state-"):
                badge.remove_class(cls)
        badge.add_class(f"-state-{state}")
        badge.tooltip = self.connection_error or None
        self.query_one("#run-title", Static).update(painted[2])

    def _paint_progress(self) -> None:
        progress = self.query_one(ProgressLine)
        h = self.history
        info = self.info
        total = info.total_steps if info and info.total_steps else 0
        if not total and self.preset is not None:
            total = int(getattr(getattr(self.preset, "orpo", None), "max_training_steps", 0) or 0)
        step = max(h.last_step, info.step if info else 0)
        start = h.first_time
        if info and info.started > 0 and (not start == start or info.started <= start):
            start = info.started
        end = h.last_time
        if info and info.ended > 0 and self.state not in LIVE:
            end = max(info.ended, end) if end == end else info.ended
        elapsed = end - start if start == start and end == end else math.nan
        if self.state == SUCCEEDED:
            eta = 0.0
        elif self.state in LIVE or not self.state:
            eta = h.eta_seconds(total)
        else:
            eta = math.nan
        progress.step = step
        progress.total = total
        progress.epoch = h.last("epoch")
        progress.elapsed = elapsed
        progress.eta = eta
        window = WINDOWS[self.window_index]
        progress.window = f"plots: last {format_number(window, 3)} steps" if window else ""

    def watch_active_panel(self, old: str, new: str) -> None:
        # Only the two panels that change: restyling costs per widget.
        self.query_one(f"#{old}").remove_class("-active")
        self.query_one(f"#{new}").add_class("-active")
        self.query_one(PanelTabs).set_active(new)
        if new == "log":
            # Lines written while the panel was hidden did not scroll it: catch up.
            log = self.query_one("#log", LogPanel).query_one(Log)
            self.call_after_refresh(log.scroll_end, animate=False)

    # -- actions --

    def palette_commands(self) -> list[PaletteCommand]:
        """The monitor's actions for the command palette (see orpo_tui.ui.commands)."""
        commands = [PaletteCommand(f"Monitor: show {label} panel", f"Key {i}",
                                   lambda key=key: self.action_show_panel(key))
                    for i, (key, label) in enumerate(PANELS, 1)
                    if key != "error" or self.error is not None]
        if self.check_action("stop", ()):
            commands.append(PaletteCommand("Monitor: stop the run", "Checkpoint first, then stop (key s)",
                                           self.action_stop))
        commands += [
            PaletteCommand("Monitor: zoom panel", "Fill the screen with the focused panel (key z)",
                           self.action_zoom),
            PaletteCommand("Monitor: plot window", "Whole history, or the last 10k / 1k / 100 steps (key w)",
                           self.action_window),
        ]
        return commands

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show_panel" and parameters and parameters[0] == "error":
            return self.error is not None
        if action == "stop":
            if getattr(self, "read_only", False):
                return False  # opened after it ended: there is nothing to stop, so no key for it
            return (self.state in LIVE or not self.state) and not self.stop_requested or None
        return True

    def action_show_panel(self, key: str) -> None:
        if self.maximized is not None:
            self.minimize()
        self.active_panel = key
        self.call_after_refresh(self._focus_panel, key)

    def _focus_panel(self, key: str) -> None:
        """Focus what scrolls (the log, the traceback); plot panels need no focus.

        Moving focus needlessly is not free: the footer rebuilds on every change.
        """
        panel = self.query_one(f"#{key}")
        target: Widget | None = None
        if isinstance(panel, LogPanel):
            target = panel.query_one(Log)
        elif panel.focusable:
            target = panel
        if target is not None:
            target.focus()
        elif self.focused is not None:
            self.set_focus(None)  # keys went to another panel: leave no hidden widget focused

    def _current_panel(self) -> Widget:
        return self.query_one(f"#{self.active_panel}")

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
        else:
            self.maximize(self._current_panel())

    def action_window(self) -> None:
        self.window_index = (self.window_index + 1) % len(WINDOWS)
        window = WINDOWS[self.window_index]
        for panel in self.query(".panel"):
            if hasattr(panel, "window"):
                panel.window = window
        self._dirty = True
        self._flush()
        self.query_one(PanelTabs).set_note(self.query_one(ProgressLine).window)

    def action_stop(self) -> None:
        if self.stop_requested or (self.state and self.state not in LIVE):
            return
        run_id = getattr(self.handle, "run_id", "") or (self.info.run_id if self.info else "")
        self.app.push_screen(StopConfirm(run_id), self._stop_answered)

    def _stop_answered(self, confirmed: bool | None) -> None:
        if not confirmed or self.stop_requested:
            return
        self.stop_requested = True
        self.refresh_bindings()
        self._paint_state()
        self._send_stop()
        self.notify("Stop requested: the trainer checkpoints, then stops.", title="Stopping")

    # -- opened from the Runs screen --

    def preload_info(self, info: RunInfo) -> None:
        """What the run list already knows, shown until the first poll answers: an ended run
        opens read-only (no Stop) from the first frame."""
        self.info = info
        self.set_reactive(MonitorScreen.state, info.state)
        #: Opened after the run ended: the Stop key is hidden, not just disabled.
        self.read_only = info.state not in LIVE

    def set_overlay(self, overlay: Any) -> None:
        """Draw another run's train loss and log-odds beside this one's (a `panels.Overlay`)."""
        self.overlay = overlay
        if self.is_mounted:
            self._apply_overlay()

    @on(Mount)
    def _apply_overlay(self) -> None:
        overlay = getattr(self, "overlay", None)
        if overlay is None:
            return
        for panel in self.query(".panel"):
            if hasattr(panel, "overlay"):
                panel.overlay = overlay
        self._dirty = True

    def action_show_preset(self) -> None:
        from pathlib import Path

        from orpo_tui import preset as presets
        from orpo_tui.ui.run_dialogs import PresetView

        run_dir = getattr(self.handle, "run_dir", None)
        try:  # the file the run was launched with, exactly
            text = (Path(run_dir) / "preset.toml").read_text(encoding="utf-8") if run_dir else None
        except OSError:
            text = None
        if text is None and self.preset is not None:
            text = presets.dumps(self.preset)
        if text is None:
            self.notify("This run's preset is not known here.", severity="warning")
            return
        self.app.push_screen(PresetView(f"Preset of run {self.handle.run_id}", text))

    def action_close(self) -> None:
        if self.maximized is not None:
            self.minimize()
        elif len(self.app.screen_stack) > 1:
            self.dismiss(None)
        else:
            self.app.exit()


__all__ = [
    "MonitorScreen", "PollFailed", "RunHandleLike", "StopConfirm", "StopFailed", "UpdateArrived",
    "format_event", "merge_updates",
]
