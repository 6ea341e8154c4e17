"""Preset files for the console: where they live, reading them, and the pick/save-as/diff modals."""

from __future__ import annotations

import json
import os
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from orpo_tui import preset as presets
from orpo_tui.preset import Preset, PresetError

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------- files

def user_preset_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "orpo-tui" / "presets"


def default_preset_dirs() -> list[Path]:
    """The repo's `presets/` (next to the package, or under the cwd), then the user's folder."""
    candidates = [Path(__file__).resolve().parents[2] / "presets", Path.cwd() / "presets"]
    dirs: list[Path] = []
    for d in candidates:
        if d.is_dir() and d.resolve() not in dirs:
            dirs.append(d.resolve())
    dirs.append(user_preset_dir())
    return dirs


def display_path(path: Path) -> str:
    """A short, stable spelling of a path: relative to the cwd, else to ~, else absolute."""
    path = Path(path).expanduser().resolve()
    for base, prefix in ((Path.cwd().resolve(), ""), (Path.home().resolve(), "~/")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


def read_preset(path: Path) -> Preset:
    """Read a preset file, refusing bad TOML, unknown keys and wrong types.

    Unlike `preset.load`, a preset that only fails validation (say, a model folder
    missing on this machine) is returned, so the form can show and fix its problems.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError("no such preset file", file=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PresetError(f"cannot read: {e}", file=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"TOML syntax error: {e}", file=path) from None
    return presets.from_dict(data, file=path, base_dir=path.resolve().parent)


@dataclass(frozen=True)
class PresetEntry:
    """One preset file found in a preset folder."""

    path: Path
    name: str
    description: str
    error: str = ""


def scan_presets(dirs: list[Path]) -> list[PresetEntry]:
    """Every `*.toml` in the folders, in folder order, then by file name."""
    out: list[PresetEntry] = []
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.toml")):
            try:
                p = read_preset(path)
            except PresetError as e:
                out.append(PresetEntry(path, path.stem, "", e.reason))
            else:
                out.append(PresetEntry(path, p.name, p.description))
    return out


def rebase_paths(preset: Preset, new_dir: Path) -> tuple[Preset, list[tuple[str, Any, Any]]]:
    """A copy of `preset` to be saved in `new_dir`, and which keys that changed.

    Relative local paths resolve against the preset's folder, so a file saved
    elsewhere would silently point them somewhere else: they are made absolute.
    """
    new_dir = Path(new_dir).resolve()
    if (preset.base_dir or Path.cwd()).resolve() == new_dir:
        out = preset.copy()
    else:
        out = preset.absolutized()
    out.base_dir = new_dir
    return out, presets.diff(preset, out)


# ---------------------------------------------------------------- values as form text

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{k if BARE_KEY.match(k) else json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return str(value)


def format_value(key: str, value: Any) -> str:
    """What a form field shows for `value`; `preset.parse_field(key, ...)` reads it back."""
    tp = presets.FIELD_SPECS[key].type
    origin = typing.get_origin(tp)
    if tp is str:
        return value
    if tp is bool:
        return "true" if value else "false"
    if tp in (int, float):
        return repr(value)
    if origin in (list, dict):
        return _toml_value(value) if value else ""
    return str(value)


def format_for_diff(key: str, value: Any) -> str:
    if key in presets.FIELD_SPECS and presets.FIELD_SPECS[key].type is str:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, dict)) and not value:
        return "[]" if isinstance(value, list) else "{}"
    return format_value(key, value) if key in presets.FIELD_SPECS else str(value)


# ---------------------------------------------------------------- modals

class DiffScreen(ModalScreen[bool]):
    """Differences between two presets, one key at a time; confirm or cancel (or just close)."""

    BINDINGS = [
        Binding("y", "confirm", "Confirm", id="diff.confirm", tooltip="Go ahead with the change"),
        Binding("escape,n", "cancel", "Cancel", id="diff.cancel", tooltip="Close without changing anything"),
    ]

    def __init__(self, title: str, rows: list[tuple[str, Any, Any]], *, confirm: str | None = None,
                 before: str = "before", after: str = "after", note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows
        self.confirm_label = confirm
        self.before = before
        self.after = after
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(Content.styled(self.title_text, "bold"), classes="dialog-title")
            legend = Content.assemble(("- ", "$text-error"), self.before, "   ", ("+ ", "$text-success"), self.after)
            yield Static(legend, classes="dialog-legend")
            with VerticalScroll(id="diff-rows"):
                if not self.rows:
                    yield Static("No differences.")
                for key, a, b in self.rows:
                    yield Static(Content.assemble(
                        (key, "bold"), "\n",
                        ("  - ", "$text-error"), format_for_diff(key, a), "\n",
                        ("  + ", "$text-success"), format_for_diff(key, b)), classes="diff-row")
            if self.note:
                yield Static(self.note, classes="dialog-note")
            with Horizontal(classes="dialog-buttons"):
                if self.confirm_label:
                    yield Button(f"{self.confirm_label} (y)", variant="warning", id="confirm", compact=True)
                    yield Button("Cancel (esc)", id="cancel", compact=True)
                else:
                    yield Button("Close (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#diff-rows").focus()

    def action_confirm(self) -> None:
        self.dismiss(bool(self.confirm_label))

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()


class PresetPickerScreen(ModalScreen[Path | None]):
    """Pick a preset file from the preset folders."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="picker.cancel", tooltip="Keep the current preset")]

    def __init__(self, dirs: list[Path], current: Path | None = None) -> None:
        super().__init__()
        self.dirs = dirs
        self.current = current.resolve() if current else None
        self.entries: list[PresetEntry] = []

    def compose(self) -> ComposeResult:
        self.entries = scan_presets(self.dirs)
        options: list[Option | None] = []
        for i, d in enumerate(self.dirs):
            found = [(n, e) for n, e in enumerate(self.entries) if e.path.parent == d]
            if options:
                options.append(None)
            heading = Content.assemble((display_path(d) + "/", "bold"),
                                       ("" if found else "  (no presets yet)", "dim"))
            options.append(Option(heading, id=f"dir-{i}", disabled=True))
            for n, e in found:
                mark = "● " if self.current and e.path.resolve() == self.current else "  "
                second = Content.styled(f"✗ {e.error}", "$text-error") if e.error \
                    else Content.styled(e.description or e.path.name, "dim")
                options.append(Option(Content.assemble(mark, (e.name, "bold"), f"  {e.path.name}\n  ", second),
                                      id=f"preset-{n}"))
        with Vertical(id="dialog", classes="dialog"):
            yield Static(Content.styled("Open a preset", "bold"), classes="dialog-title")
            yield OptionList(*options, id="preset-list")
            yield Static(Content.styled("enter opens · esc cancels", "dim"), classes="dialog-note")

    def on_mount(self) -> None:
        olist = self.query_one(OptionList)
        olist.focus()
        for i, e in enumerate(self.entries):
            if self.current and e.path.resolve() == self.current:
                olist.highlighted = olist.get_option_index(f"preset-{i}")
                break
        else:
            if self.entries:
                olist.highlighted = olist.get_option_index("preset-0")

    @on(OptionList.OptionSelected, "#preset-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id and event.option.id.startswith("preset-"):
            self.dismiss(self.entries[int(event.option.id.removeprefix("preset-"))].path)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SaveAsScreen(ModalScreen[Path | None]):
    """Ask where to save the preset; relative names go to the user's preset folder."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="save_as.cancel", tooltip="Do not save")]

    def __init__(self, default: Path, save_dir: Path) -> None:
        super().__init__()
        self.default = default
        self.save_dir = save_dir

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(Content.styled("Save preset as", "bold"), classes="dialog-title")
            yield Static(Content.styled(f"A bare name goes to {display_path(self.save_dir)}/", "dim"),
                         classes="dialog-note")
            path_input = Input(display_path(self.default), id="save-path", compact=True)
            path_input.cursor_blink = not self.app.is_headless
            yield path_input
            yield Static("", id="save-error", classes="field-error")
            yield Static(Content.styled("enter saves · esc cancels", "dim"), classes="dialog-note")

    def target(self, text: str) -> Path:
        text = text.strip()
        path = Path(text).expanduser()
        if not path.is_absolute() and not text.startswith(("./", "../")) and "/" not in text:
            path = self.save_dir / path
        if path.suffix != ".toml":
            path = path.with_name(path.name + ".toml")
        return path.resolve()

    @on(Input.Submitted, "#save-path")
    def _submitted(self, event: Input.Submitted) -> None:
        error = self.query_one("#save-error", Static)
        if not event.value.strip():
            error.update("✗ give a file name")
            return
        path = self.target(event.value)
        if path.exists() and not path.is_file():
            error.update(f"✗ {display_path(path)} is not a file")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
