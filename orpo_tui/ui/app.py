"""The Textual app and `make_app`, the one factory the CLI and the tests use."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen, Screen

from orpo_tui.job.records import LIVE
from orpo_tui.preset import Preset, PresetError
from orpo_tui.ui.commands import OrpoCommands, PaletteCommand
from orpo_tui.ui.configure import ConfigureScreen
from orpo_tui.ui.help_screen import HelpScreen
from orpo_tui.ui.presets_screen import default_preset_dirs, read_preset
from orpo_tui.ui.run_dialogs import LiveRun, QuitChoice, QuitScreen

if TYPE_CHECKING:
    from orpo_tui.job.client import RunClient, RunHandle
    from orpo_tui.ui.preflight_screen import PreflightRunner

ClientFactory = Callable[[], "RunClient"]
MonitorFactory = Callable[["RunHandle", "Preset | None"], Screen]


@dataclass
class LiveRunsChecked(Message):
    """Which followed runs are still live, asked for by quit."""

    live: list[tuple[LiveRun, RunHandle]]


@dataclass
class StopsSent(Message):
    """Quit's stop requests went out (`failed` names those that could not be asked)."""

    stopped: list[str]
    failed: list[str]


def default_client_factory() -> RunClient:
    # Imported here: the engine client pulls in ray, which the configure side never needs.
    from orpo_tui.job.client import RunClient

    return RunClient()


class OrpoApp(App[None]):
    """orpo-tui: configure an ORPO run, launch it, watch it."""

    TITLE = "orpo-tui"
    CSS_PATH = ["app.tcss", "configure.tcss"]
    COMMANDS = App.COMMANDS | {OrpoCommands}
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", id="help", tooltip="List every key"),
        # Shown by the Footer itself, docked right.
        Binding("ctrl+p", "command_palette", "Commands", id="command_palette", priority=True, show=False,
                tooltip="Find any action by name"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True, show=False,
                tooltip="Leave orpo-tui; asks first while a run it follows is live (runs never stop by themselves)"),
        # Configure shows it in its footer; from elsewhere it works unlisted.
        Binding("f6", "runs", "Runs", id="runs", show=False,
                tooltip="Live and past runs: open, resume, overlay two"),
    ]

    def __init__(self, preset: Preset, preset_path: Path | None = None, *,
                 client_factory: ClientFactory | None = None, preset_dirs: list[Path] | None = None,
                 monitor_factory: MonitorFactory | None = None, environ: Mapping[str, str] | None = None,
                 attach_run: RunHandle | None = None, preflight_runner: PreflightRunner | None = None,
                 open_runs: bool = False, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.initial_preset = preset
        self.preset_path = preset_path
        self.client_factory = client_factory or default_client_factory
        self.preset_dirs = default_preset_dirs() if preset_dirs is None else list(preset_dirs)
        #: Builds the screen shown after Launch; None means `orpo_tui.ui.monitor.MonitorScreen`.
        self.monitor_factory = monitor_factory
        #: Where secret variables are looked up (names only ever; values are never read out).
        self.environ = os.environ if environ is None else environ
        #: A run to show at start (`orpo-tui attach`); Configure stays underneath.
        self.attach_run = attach_run
        #: The dataset check behind the Preflight view and Launch; None means `run_preflight`.
        self.preflight_runner = preflight_runner
        #: Open on the Runs screen (over Configure): `orpo-tui` with no preset when runs exist.
        self.open_runs = open_runs
        #: Wall clock for live runs' durations on the Runs screen (fixed in snapshots).
        self.clock = clock or time.time
        #: Runs this console launched or attached, by id: quitting asks about the live ones.
        self.followed: dict[str, RunHandle] = {}
        self._client: RunClient | None = None
        self._client_lock = threading.Lock()

    def get_default_screen(self) -> Screen:
        return ConfigureScreen(self.initial_preset, self.preset_path, preset_dirs=self.preset_dirs,
                               environ=self.environ)

    def on_mount(self) -> None:
        if self.attach_run is not None:
            self.push_screen(self.monitor_screen(self.attach_run, self.initial_preset))
        elif self.open_runs:
            self.action_runs()

    def run_client(self) -> RunClient:
        """The engine client, made on first use (blocking: call from a thread worker)."""
        with self._client_lock:
            if self._client is None:
                self._client = self.client_factory()
            return self._client

    def run_client_if_made(self) -> RunClient | None:
        """The engine client if a worker already made it (never blocks)."""
        return self._client

    def monitor_screen(self, handle: RunHandle, preset: Preset | None) -> Screen:
        self.followed[handle.run_id] = handle
        if self.monitor_factory is not None:
            return self.monitor_factory(handle, preset)
        from orpo_tui.ui.monitor import MonitorScreen

        return MonitorScreen(handle, preset)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def palette_commands(self) -> list[PaletteCommand]:
        return [PaletteCommand("Runs: live and past runs", "Open, resume or compare runs (key f6)",
                               self.action_runs),
                PaletteCommand("Help: keys", "List every key", self.action_help)]

    # -- the Runs screen --

    def action_runs(self) -> None:
        """Show the Runs screen: back down to it if it is open under a monitor, else push it."""
        from orpo_tui.ui.runs_screen import RunsScreen

        if isinstance(self.screen, ModalScreen | RunsScreen):
            return
        if any(isinstance(s, RunsScreen) for s in self.screen_stack):
            while not isinstance(self.screen, RunsScreen):
                self.pop_screen()
            return
        self.push_screen(RunsScreen(clock=self.clock))

    # -- quitting: never stops a run by itself --

    async def action_quit(self) -> None:
        """Quit; if a run this console follows is live, ask first: stop it, detach, or stay."""
        if isinstance(self.screen, QuitScreen):
            return
        if not self.followed:
            self.exit()
            return
        # What open monitors last saw: the fallback for a run that cannot be asked.
        known = {s.handle.run_id: getattr(s, "state", "") for s in self.screen_stack
                 if getattr(s, "handle", None) is not None}
        self._check_live(list(self.followed.values()), known)

    @work(thread=True, exclusive=True, group="quit", exit_on_error=False)
    def _check_live(self, handles: list[RunHandle], known: dict[str, str]) -> None:
        from orpo_tui.job import store

        live = []
        for handle in handles:
            try:
                state = handle.info().state
            except Exception:  # unreachable, or a handle without info(): what a monitor last saw,
                state = known.get(handle.run_id, "")  # else what the run folder says
                if not state:
                    info = store.read_info(Path(getattr(handle, "run_dir", "") or "."))
                    state = info.state if info is not None else ""
            if state in LIVE or not state:  # not known: ask rather than leave silently
                live.append((LiveRun(handle.run_id, state or "unknown"), handle))
        self.post_message(LiveRunsChecked(live))

    @on(LiveRunsChecked)
    def _live_checked(self, message: LiveRunsChecked) -> None:
        if not message.live:
            self.exit()
            return
        if isinstance(self.screen, QuitScreen):
            return
        handles = [h for _, h in message.live]

        def chosen(choice: QuitChoice | None) -> None:
            if choice is QuitChoice.DETACH:
                ids = ", ".join(r.run_id for r, _ in message.live)
                follow = message.live[0][0].run_id if len(message.live) == 1 else "<run-id>"
                goes = "goes" if len(message.live) == 1 else "go"
                self.exit(message=f"detached: {ids} {goes} on; follow with `orpo-tui attach {follow}`")
            elif choice is QuitChoice.STOP:
                self.notify("Asking to checkpoint and stop…", title="Stopping")
                self._stop_all(handles)

        self.push_screen(QuitScreen([r for r, _ in message.live]), chosen)

    @work(thread=True, exclusive=True, group="quit", exit_on_error=False)
    def _stop_all(self, handles: list[RunHandle]) -> None:
        stopped, failed = [], []
        for handle in handles:
            try:
                handle.stop()
            except Exception as e:  # say which, and stay: quitting must not pretend it stopped
                failed.append(f"{handle.run_id} ({type(e).__name__}: {e})")
            else:
                stopped.append(handle.run_id)
        self.post_message(StopsSent(stopped, failed))

    @on(StopsSent)
    def _stops_sent(self, message: StopsSent) -> None:
        if message.failed:
            self.notify("Could not ask " + "; ".join(message.failed) + " to stop: still live.",
                        title="Stop failed", severity="error", timeout=15)
            return
        ids = ", ".join(message.stopped)
        self.exit(message=f"stopping: {ids} saves a checkpoint, then ends (see `orpo-tui runs`)")


def make_app(preset_path: Path | None = None, *, client_factory: ClientFactory | None = None,
             preset_dirs: list[Path] | None = None, attach_run: RunHandle | None = None,
             **options: Any) -> OrpoApp:
    """The app, opened on `preset_path` (or a blank preset), or on a running run's monitor.

    Raises `PresetError` for a file that cannot be read as a preset at all; one that
    only fails validation opens, with its problems marked. With `attach_run` (and no
    path) the form holds that run's preset, unsaved. `options` go to `OrpoApp`
    (`monitor_factory`, `environ`, `preflight_runner`, `open_runs`, `clock`), for tests
    and embedding.
    """
    path = Path(preset_path) if preset_path is not None else None
    if path is not None:
        preset = read_preset(path)
    elif attach_run is not None:
        preset = run_preset(Path(attach_run.run_dir))
    else:
        preset = Preset()
    return OrpoApp(preset, path, client_factory=client_factory, preset_dirs=preset_dirs,
                   attach_run=attach_run, **options)


def run_preset(run_dir: Path) -> Preset:
    """The preset a run was launched with (its `preset.toml`), or a blank one if unreadable."""
    try:
        preset = read_preset(run_dir / "preset.toml")
    except PresetError:
        return Preset()
    preset.base_dir = None  # its paths were made absolute at launch; not a file to save over
    return preset
