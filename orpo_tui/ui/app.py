"""The Textual app and `make_app`, the one factory the CLI and the tests use."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from orpo_tui.preset import Preset, PresetError
from orpo_tui.ui.commands import OrpoCommands, PaletteCommand
from orpo_tui.ui.configure import ConfigureScreen
from orpo_tui.ui.help_screen import HelpScreen
from orpo_tui.ui.presets_screen import default_preset_dirs, read_preset

if TYPE_CHECKING:
    from orpo_tui.job.client import RunClient, RunHandle

ClientFactory = Callable[[], "RunClient"]
MonitorFactory = Callable[["RunHandle", "Preset | None"], Screen]


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
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True, show=False, tooltip="Leave orpo-tui"),
    ]

    def __init__(self, preset: Preset, preset_path: Path | None = None, *,
                 client_factory: ClientFactory | None = None, preset_dirs: list[Path] | None = None,
                 monitor_factory: MonitorFactory | None = None, environ: Mapping[str, str] | None = None,
                 attach_run: RunHandle | None = None) -> None:
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
        self._client: RunClient | None = None
        self._client_lock = threading.Lock()

    def get_default_screen(self) -> Screen:
        return ConfigureScreen(self.initial_preset, self.preset_path, preset_dirs=self.preset_dirs,
                               environ=self.environ)

    def on_mount(self) -> None:
        if self.attach_run is not None:
            self.push_screen(self.monitor_screen(self.attach_run, self.initial_preset))

    def run_client(self) -> RunClient:
        """The engine client, made on first use (blocking: call from a thread worker)."""
        with self._client_lock:
            if self._client is None:
                self._client = self.client_factory()
            return self._client

    def monitor_screen(self, handle: RunHandle, preset: Preset | None) -> Screen:
        if self.monitor_factory is not None:
            return self.monitor_factory(handle, preset)
        from orpo_tui.ui.monitor import MonitorScreen

        return MonitorScreen(handle, preset)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def palette_commands(self) -> list[PaletteCommand]:
        return [PaletteCommand("Help: keys", "List every key", self.action_help)]


def make_app(preset_path: Path | None = None, *, client_factory: ClientFactory | None = None,
             preset_dirs: list[Path] | None = None, attach_run: RunHandle | None = None,
             **options: Any) -> OrpoApp:
    """The app, opened on `preset_path` (or a blank preset), or on a running run's monitor.

    Raises `PresetError` for a file that cannot be read as a preset at all; one that
    only fails validation opens, with its problems marked. With `attach_run` (and no
    path) the form holds that run's preset, unsaved. `options` go to `OrpoApp`
    (`monitor_factory`, `environ`), for tests and embedding.
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
