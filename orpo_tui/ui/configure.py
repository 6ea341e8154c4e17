"""The Configure screen: a form per preset section, checked as you type, and Launch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import var
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Label, OptionList, Select, Static, Switch
from textual.widgets.option_list import Option

from orpo_tui import accelerators
from orpo_tui import preset as presets
from orpo_tui.preflight import PreflightReport
from orpo_tui.preset import FIELD_SPECS, FieldSpec, Preset, PresetError, Problem
from orpo_tui.ui.commands import PaletteCommand
from orpo_tui.ui.preflight_screen import PreflightRunner, PreflightScreen, default_preflight_runner, preflight_key
from orpo_tui.ui.presets_screen import (
    DiffScreen,
    PresetPickerScreen,
    SaveAsScreen,
    display_path,
    format_value,
    read_preset,
    rebase_paths,
)

if TYPE_CHECKING:
    from orpo_tui.job.client import RunHandle
    from orpo_tui.ui.app import OrpoApp

#: (id, title) of each form, in the order of the section list.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("general", "General"), ("model", "Model"), ("dataset", "Dataset"),
    ("accelerator", "Accelerator"), ("orpo", "ORPO"), ("output", "Output"),
    ("logging", "Logging"), ("secrets", "Secrets"),
)
WIDE = 120
PLACEHOLDERS = {
    "model.id": "e.g. Qwen/Qwen3-14B or ./models/my-model",
    "model.tokenizer": "empty: the model's own",
    "model.sharding_axis_dims": "[dp, fsdp, ep, tp, sp]",
    "dataset.id": "e.g. mlabonne/orpo-dpo-mix-40k, or use data_files",
    "dataset.data_files": 'e.g. {train = ["data/train.jsonl"]}',
    "dataset.eval_split": "empty: no evaluation split",
    "accelerator.ray_address": "empty: start or reuse a local head",
    "accelerator.env": 'e.g. {NAME = "value"}',
    "accelerator.pip": 'e.g. ["package==1.0"]',
    "logging.wandb_entity": "empty: your default",
    "logging.wandb_project": "empty: EasyDeL-ORPO",
    "logging.wandb_name": "empty: generated",
}
TYPE_SUGGESTIONS = [*accelerators.SLICES, "cpu", *accelerators.GPU_PEAK_TFLOPS]


def section_of(key: str) -> str:
    head = key.split(".", 1)[0]
    return head if "." in key else "general"


def field_of(problem_key: str) -> str | None:
    """The form field a problem belongs to (`dataset.data_files.train` -> `dataset.data_files`)."""
    best = None
    for key in FIELD_SPECS:
        if problem_key == key or problem_key.startswith(key + "."):
            if best is None or len(key) > len(best):
                best = key
    return best


def preflight_problems(report: PreflightReport) -> list[Problem]:
    """The report's blocking problems, each under the form field it names ("preflight" if none)."""
    out = []
    for message in report.blocking:
        words = (w.rstrip(":.()") for w in message.replace(",", " ").replace(";", " ").split())
        key = next((f for f in map(field_of, words) if f), "preflight")
        out.append(Problem(key, message))
    return out


def editor_id(key: str) -> str:
    return "f-" + key.replace(".", "--")


def key_of(widget_id: str) -> str:
    return widget_id.removeprefix("f-").replace("--", ".")


# ---------------------------------------------------------------- widgets

class FieldRow(Vertical):
    """One preset key: its editor, help and allowed range, and why its value is refused."""

    modified: var[bool] = var(False, init=False)
    """The value differs from the loaded preset."""
    reason: var[str] = var("", init=False)
    """Why the current value is refused; empty when it is fine."""

    def __init__(self, spec: FieldSpec, value: Any) -> None:
        super().__init__(classes="field-row", id="row-" + editor_id(spec.key))
        self.spec = spec
        self.initial = value
        self._note: Content | str = ""

    @property
    def key(self) -> str:
        return self.spec.key

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field-line"):
            yield Label(self.key.rsplit(".", 1)[-1], classes="field-label")
            yield self._make_editor()
        yield Static(self.info(), classes="field-info")

    def info(self) -> Content:
        """The lines under the editor: help and allowed range, then a note, then why the value is refused."""
        range_text = "" if self.spec.choices else self.spec.range_text
        parts: list[Any] = [self.spec.help, (f"  ({range_text})" if range_text else "", "bold")]
        if self._note:
            parts += ["\n", self._note]
        for line in self.reason.splitlines():
            parts += ["\n", (f"✗ {line}", "$text-error")]
        return Content.assemble(*parts)

    def _make_editor(self) -> Widget:
        spec, value, wid = self.spec, self.initial, editor_id(self.key)
        if spec.choices:
            choices = list(spec.choices) + ([value] if value not in spec.choices else [])
            return Select([(c, c) for c in choices], value=value, allow_blank=False, compact=True,
                          id=wid, classes="field-editor")
        if spec.type is bool:
            return Switch(bool(value), animate=False, id=wid, classes="field-editor")
        suggester = SuggestFromList(TYPE_SUGGESTIONS, case_sensitive=False) if self.key == "accelerator.type" else None
        editor = Input(format_value(self.key, value), placeholder=PLACEHOLDERS.get(self.key, ""), compact=True,
                       suggester=suggester, id=wid, classes="field-editor")
        editor.cursor_blink = not self.app.is_headless  # a blinking cursor makes snapshots flaky
        return editor

    @property
    def editor(self) -> Widget:
        return self.query_one(f"#{editor_id(self.key)}")

    def text(self) -> str:
        """What the editor holds, as text for `preset.parse_field`."""
        editor = self.editor
        if isinstance(editor, Input):
            return editor.value
        if isinstance(editor, Switch):
            return "true" if editor.value else "false"
        return str(cast(Select, editor).value)

    def show(self, value: Any) -> None:
        """Put `value` in the editor (the caller silences the Changed message)."""
        editor = self.editor
        if isinstance(editor, Input):
            editor.value = format_value(self.key, value)
            editor.cursor_position = len(editor.value)
        elif isinstance(editor, Switch):
            editor.value = bool(value)
        else:
            select = cast(Select, editor)
            choices = list(self.spec.choices or ())
            if value not in choices:
                select.set_options([(c, c) for c in [*choices, value]])
            select.value = value

    def set_note(self, note: Content | str) -> None:
        """An extra line about the value (what a slice is, whether a secret is set)."""
        if note != self._note:
            self._note = note
            self.set_class(bool(note), "-noted")
            self.query_one(".field-info", Static).update(self.info())

    def watch_modified(self, modified: bool) -> None:
        self.set_class(modified, "-modified")
        self.query_one(".field-label", Label).update(
            Content.assemble(self.key.rsplit(".", 1)[-1], ("*" if modified else "", "$text-warning bold")))

    def watch_reason(self, reason: str) -> None:
        self.set_class(bool(reason), "-invalid")
        self.query_one(".field-info", Static).update(self.info())


class FormScroll(VerticalScroll, can_focus=False):
    """A section's form; up/down move between fields (choice menus keep theirs) instead of scrolling."""

    BINDINGS = [
        Binding("down", "app.focus_next", "Next field", show=False),
        Binding("up", "app.focus_previous", "Previous field", show=False),
    ]


class SectionList(OptionList):
    """The form sections; moving the highlight switches the form."""

    BINDINGS = [Binding("right", "select", "Edit section", show=False)]


class ProblemsScreen(ModalScreen[str | None]):
    """Every problem with the preset; picking one jumps to its field."""

    BINDINGS = [Binding("escape", "close", "Close", id="problems.close", tooltip="Back to the form")]

    def __init__(self, title: str, problems: list[Problem]) -> None:
        super().__init__()
        self.title_text = title
        self.problems = problems

    def compose(self) -> ComposeResult:
        options = [Option(Content.assemble((p.key, "bold"), "\n  ", (p.message, "$text-error")), id=f"p-{i}")
                   for i, p in enumerate(self.problems)]
        with Vertical(id="dialog", classes="dialog"):
            yield Static(Content.styled(self.title_text, "bold"), classes="dialog-title")
            yield OptionList(*options, id="problem-list")
            yield Static(Content.styled("enter jumps to the field · esc closes", "dim"), classes="dialog-note")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected, "#problem-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.problems[int((event.option.id or "p-0")[2:])].key)

    def action_close(self) -> None:
        self.dismiss(None)


class SlicePickerScreen(ModalScreen[str | None]):
    """The TPU slice catalog (chips, hosts, HBM, peak TFLOP/s) and the local CPU."""

    BINDINGS = [Binding("escape", "close", "Cancel", id="slices.close", tooltip="Keep the current accelerator")]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog slice-dialog"):
            yield Static(Content.styled("Pick an accelerator", "bold"), classes="dialog-title")
            yield DataTable(id="slice-table", cursor_type="row", zebra_stripes=True)
            yield Static(Content.styled("enter picks · esc cancels · bf16 peak per slice", "dim"),
                         classes="dialog-note")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Slice", "Chips", "Hosts", "HBM/chip", "HBM", "TFLOP/s")
        table.add_row("cpu", "-", "1", "-", "-", "-", key="cpu", label=None)
        for name, s in accelerators.SLICES.items():
            g = s.generation
            table.add_row(name, str(s.chips), str(s.hosts), f"{g.hbm_gib_per_chip:g} GiB",
                          f"{s.hbm_gib:g} GiB", f"{s.peak_tflops:g}", key=name)
        try:
            current = accelerators.tpu_slice(self.current).name
        except KeyError:
            current = "cpu" if self.current == "cpu" else ""
        if current:
            table.move_cursor(row=table.get_row_index(current))
        table.focus()

    @on(DataTable.RowSelected, "#slice-table")
    def _picked(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def action_close(self) -> None:
        self.dismiss(None)


# ---------------------------------------------------------------- the screen

@dataclass
class Launched(Message):
    """The engine accepted the preset; the run is starting."""

    handle: RunHandle
    preset: Preset


@dataclass
class LaunchFailed(Message):
    """The engine refused or could not start the run."""

    error: str


@dataclass
class PreflightChecked(Message):
    """Launch ran the preflight first; this is what it found (blocking problems stop the launch)."""

    key: tuple[str, ...]
    report: PreflightReport


class ConfigureScreen(Screen[None]):
    """Edit a preset section by section; save it, or launch it."""

    AUTO_FOCUS = "#sections"
    BINDINGS = [
        Binding("ctrl+r,f5", "launch", "Launch", id="launch",
                tooltip="Start a run with this preset (refused, with the reasons, while anything is invalid)"),
        Binding("ctrl+o", "open_preset", "Open", id="open_preset",
                tooltip="Pick a preset from the preset folders"),
        Binding("ctrl+s", "save", "Save", id="save", tooltip="Save the preset to its file (shows changes first)"),
        Binding("f2", "save_as", "Save as", id="save_as", tooltip="Save the preset to a new file"),
        Binding("ctrl+t", "pick_slice", "Slice", id="pick_slice",
                tooltip="Pick a TPU slice (chips, hosts, HBM) or the local CPU"),
        Binding("f3", "show_changes", "Diff", id="show_changes",
                tooltip="Fields that differ from the loaded preset"),
        # Kept out of the full 80-column footer; the status line names the key.
        Binding("f4", "preflight", "Preflight", id="preflight", show=False,
                tooltip="Check the dataset against the tokenizer and the length limits (Launch does too)"),
        Binding("f6", "app.runs", "Runs", id="runs", tooltip="Live and past runs: open, resume, overlay two"),
        # Kept out of the 80-column footer; the status line names the key when there are problems.
        Binding("f8", "show_problems", "Problems", id="show_problems", show=False,
                tooltip="Every problem with the preset; jump to one"),
        Binding("escape", "focus_sections", "Sections", id="focus_sections", show=False,
                tooltip="Back to the section list"),
    ]

    section: var[str] = var("general", init=False)
    """The form shown on the right."""
    problems: var[list[Problem]] = var(list, init=False, always_update=True)
    """What is wrong with the form now: unparsable fields first, then `preset.validate`."""
    launching: var[bool] = var(False, init=False)
    """A launch is in flight; another is refused."""
    checking: var[bool] = var(False, init=False)
    """The launch in flight is running the preflight first."""

    def __init__(self, preset: Preset, path: Path | None = None, *, preset_dirs: list[Path] | None = None,
                 save_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.preset = preset.copy()
        self.baseline = preset.copy()
        self.preset_path = path.resolve() if path else None
        self.preset_dirs = preset_dirs or []
        self.save_dir = save_dir or (self.preset_dirs[-1] if self.preset_dirs else Path.cwd())
        self.environ = environ
        #: Fields whose text does not parse: key -> (text, reason). The preset keeps the last good value.
        self.parse_errors: dict[str, tuple[str, str]] = {}
        self._rows: dict[str, FieldRow] = {}
        self._prompts: dict[str, Content] = {}
        self._footer_state: tuple[bool, bool] | None = None
        #: The last preflight report and the `preflight_key` of the preset it checked.
        self._preflight: tuple[tuple[str, ...], PreflightReport] | None = None

    @property
    def orpo_app(self) -> OrpoApp:
        return cast("OrpoApp", self.app)

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Before the widgets exist: set on mount, the class restyles all ~380 of them (~120 ms).
        self.set_class(self.app.size.width >= WIDE, "-wide")
        yield Static("", id="title")
        with Horizontal(id="body"):
            yield SectionList(*[Option(title, id=name) for name, title in SECTIONS], id="sections")
            with ContentSwitcher(initial="section-general", id="forms"):
                for name, title in SECTIONS:
                    with FormScroll(id=f"section-{name}", classes="form"):
                        yield Static(Content.styled(title, "bold"), classes="form-title")
                        for key, spec in FIELD_SPECS.items():
                            if section_of(key) == name:
                                yield FieldRow(spec, presets.get(self.preset, key))
            with VerticalScroll(id="side", can_focus=False):
                yield Static("", id="summary")
                yield Static("", id="problem-panel")
        yield Static("", id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(SectionList).highlighted = 0
        self.revalidate()

    def on_resize(self) -> None:
        self.set_class(self.app.size.width >= WIDE, "-wide")
        self._update_side()

    def rows(self) -> dict[str, FieldRow]:
        if not self._rows:
            self._rows = {row.key: row for row in self.query(FieldRow)}
        return self._rows

    def row(self, key: str) -> FieldRow:
        return self.rows()[key]

    # ------------------------------------------------------------ editing and validation

    @on(Input.Changed, ".field-editor")
    @on(Select.Changed, ".field-editor")
    @on(Switch.Changed, ".field-editor")
    def _edited(self, event: Input.Changed | Select.Changed | Switch.Changed) -> None:
        widget = event.control
        if widget is None or widget.id is None:
            return
        key = key_of(widget.id)
        text = self.row(key).text()
        try:
            value = presets.parse_field(key, text)
        except ValueError as e:
            self.parse_errors[key] = (text, str(e))
        else:
            # Editors announce their first value on mount; only real edits cost a recheck.
            if key not in self.parse_errors and value == presets.get(self.preset, key):
                return
            self.parse_errors.pop(key, None)
            presets.set_value(self.preset, key, value)
        self.revalidate()

    def current_problems(self) -> list[Problem]:
        """Unparsable fields, then `preset.validate` (minus keys whose text does not parse)."""
        out = [Problem(key, reason) for key, (_, reason) in self.parse_errors.items()]
        out += [p for p in presets.validate(self.preset) if field_of(p.key) not in self.parse_errors]
        return out

    def changes(self) -> list[tuple[str, Any, Any]]:
        """Fields that differ from the loaded preset: (key, loaded value, form value or text)."""
        rows = []
        base, now = presets.flatten(self.baseline), presets.flatten(self.preset)
        for key in FIELD_SPECS:
            if key in self.parse_errors:
                rows.append((key, base[key], f"{self.parse_errors[key][0]} (invalid)"))
            elif base[key] != now[key]:
                rows.append((key, base[key], now[key]))
        return rows

    def revalidate(self) -> None:
        """Recheck the whole form and redraw every mark (cheap: a preset is ~60 keys)."""
        self.problems = self.current_problems()

    def watch_problems(self, problems: list[Problem]) -> None:
        reasons: dict[str, list[str]] = {}
        for p in problems:
            field = field_of(p.key)
            if field:
                detail = p.key[len(field) + 1:]
                reasons.setdefault(field, []).append(f"{detail}: {p.message}" if detail else p.message)
        changed = {key for key, _, _ in self.changes()}
        for key, row in self.rows().items():
            row.reason = "\n".join(reasons.get(key, []))
            row.modified = key in changed
        self._update_notes()
        self._update_sections(reasons, changed)
        self._update_title(bool(changed))
        self._update_status()
        self._update_side()
        # The footer rebuilds itself on every refresh: only when a contextual key appears or goes.
        footer_state = (bool(changed), bool(problems))
        if footer_state != self._footer_state:
            self._footer_state = footer_state
            self.refresh_bindings()

    def _update_notes(self) -> None:
        rows = self.rows()
        a = self.preset.accelerator
        if a.kind == "tpu":
            try:
                note = Content.styled(accelerators.tpu_slice(a.type).describe(), "$text-success")
            except KeyError:
                note = Content("")
        elif a.kind == "cpu":
            note = Content.styled(f"local CPU, {a.count} core{'s' * (a.count > 1)} per worker", "$text-success")
        else:
            peak = accelerators.peak_tflops(a.kind, a.type, a.count)
            note = Content.styled(f"{a.count} x {a.type}" + (f", {peak:g} TFLOP/s bf16" if peak else ""),
                                  "$text-success")
        rows["accelerator.type"].set_note(note)
        status = presets.secret_status(self.preset, self.environ)
        for key in ("secrets.hf_token_env", "secrets.wandb_api_key_env"):
            name = presets.get(self.preset, key)
            if key in self.parse_errors or not presets.ENV_NAME.match(name):
                rows[key].set_note("")
            elif status.get(name):
                rows[key].set_note(Content.styled(f"● {name} is set in this environment", "$text-success"))
            else:
                rows[key].set_note(Content.styled(f"○ {name} is not set in this environment", "$text-warning"))

    def _update_sections(self, reasons: dict[str, list[str]], changed: set[str]) -> None:
        sections = self.query_one(SectionList)
        for name, title in SECTIONS:
            bad = sum(1 for k in reasons if section_of(k) == name)
            mod = sum(1 for k in changed if section_of(k) == name)
            prompt = Content.assemble(title, (f" ✗{bad}" if bad else "", "$text-error"),
                                      (" *" if mod else "", "$text-warning"))
            if self._prompts.get(name) != prompt:
                self._prompts[name] = prompt
                sections.replace_option_prompt(name, prompt)

    def _update_title(self, modified: bool) -> None:
        where = display_path(self.preset_path) if self.preset_path else "not saved"
        self.query_one("#title", Static).update(Content.assemble(
            ("orpo-tui", "bold"), " · Configure · ", (self.preset.name, "bold"), f"  {where}",
            ("  * modified" if modified else "", "$text-warning")))

    def _update_status(self) -> None:
        status = self.query_one("#status", Static)
        n = len(self.problems)
        report = self.last_preflight()
        blocked = [b.removeprefix(f"{report.source}: ") for b in report.blocking] if report else []
        if self.launching:
            status.update(Content.styled("Preflight: checking the dataset before launch…" if self.checking
                                         else "Launching…", "$text-accent"))
        elif n:
            first = self.problems[0]
            status.update(Content.assemble(
                (f"✗ {n} problem{'s' * (n > 1)}", "$text-error bold"), (" (f8) ", "dim"), (first.key, "bold"),
                f": {first.message}"))
        elif blocked:
            status.update(Content.assemble(("✗ Preflight blocks launch", "$text-error bold"), (" (f4) ", "dim"),
                                           blocked[0]))
        else:
            warned = len(report.warnings) if report else 0
            checked = (f" · preflight: {warned} warning{'s' * (warned > 1)} (f4)", "$text-warning") if warned else (
                (" · preflight ok (f4)", "dim") if report else (" · f4 checks the dataset", "dim"))
            status.update(Content.assemble(("✓ Ready to launch", "$text-success bold"), "  ctrl+r starts the run",
                                           checked))

    def _update_side(self) -> None:
        if not self.has_class("-wide"):
            return
        self.query_one("#summary", Static).update(summarize(self.preset, self.environ))
        panel = self.query_one("#problem-panel", Static)
        if self.problems:
            parts: list[Any] = [(f"Problems ({len(self.problems)})", "bold $text-error")]
            for p in self.problems:
                parts += ["\n", (p.key, "bold"), "\n  ", (p.message, "$text-error")]
            panel.update(Content.assemble(*parts))
        else:
            panel.update(Content.styled("✓ No problems: ready to launch", "$text-success bold"))

    def watch_launching(self) -> None:
        self._update_status()

    def watch_checking(self) -> None:
        self._update_status()

    # ------------------------------------------------------------ sections and focus

    @on(OptionList.OptionHighlighted, "#sections")
    def _section_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.section = event.option.id

    @on(OptionList.OptionSelected, "#sections")
    def _section_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.show_section(event.option.id, focus=True)

    def watch_section(self, section: str) -> None:
        self.query_one(ContentSwitcher).current = f"section-{section}"
        self.refresh_bindings()

    def show_section(self, name: str, *, focus: bool = False) -> None:
        sections = self.query_one(SectionList)
        sections.highlighted = sections.get_option_index(name)
        self.section = name
        if focus:
            first = self.query_one(f"#section-{name}").query(".field-editor").first()
            first.focus()

    def focus_field(self, key: str) -> None:
        field = field_of(key) or key
        if field not in FIELD_SPECS:
            return
        self.show_section(section_of(field))
        row = self.row(field)
        row.editor.focus()
        self.call_after_refresh(row.scroll_visible, animate=False)

    def action_focus_sections(self) -> None:
        self.query_one(SectionList).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pick_slice":
            return self.section == "accelerator"
        if action == "show_changes":
            return bool(self.changes())
        if action == "show_problems":
            return bool(self.problems)
        if action == "focus_sections":
            return self.focused is not self.query_one(SectionList)
        return True

    # ------------------------------------------------------------ the form as a whole

    def widget_value(self, key: str) -> Any:
        """The value a field's editor holds, parsed (raises ValueError if it does not parse)."""
        return presets.parse_field(key, self.row(key).text())

    def load_preset(self, preset: Preset, path: Path | None) -> None:
        """Fill every field from `preset`, which becomes the baseline for change marks."""
        self.preset = preset.copy()
        self.baseline = preset.copy()
        self.preset_path = path.resolve() if path else None
        self.parse_errors.clear()
        with self.prevent(Input.Changed, Select.Changed, Switch.Changed):
            for key, row in self.rows().items():
                row.show(presets.get(self.preset, key))
        self.revalidate()

    def set_field(self, key: str, value: Any) -> None:
        """Set one field as if typed (the Changed message validates it)."""
        self.row(key).show(value)

    # ------------------------------------------------------------ actions

    def action_launch(self) -> None:
        if self.launching:
            self.notify("A launch is already in flight.", severity="warning")
            return
        problems = self.current_problems()
        if problems:
            n = len(problems)
            self.app.push_screen(ProblemsScreen(f"Launch refused: {n} problem{'s' * (n > 1)}", problems),
                                 self._jump_to_problem)
            return
        preset = self.preset.copy()
        key = preflight_key(preset)
        report = self.last_preflight(key)
        if report is not None and report.blocking:
            self._refuse_launch(report)
            return
        self.launching = True
        self.checking = report is None
        # Checked again only when what the preflight reads changed since the last report.
        self._launch(preset, self.preflight_runner() if report is None else None)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def _launch(self, preset: Preset, preflight: PreflightRunner | None = None) -> None:
        if preflight is not None:
            key = preflight_key(preset)
            try:
                report = preflight(preset)
            except Exception as e:  # noqa: BLE001 - a crashed check refuses this launch, says why
                self.post_message(LaunchFailed(f"preflight: {type(e).__name__}: {e}"))
                return
            self.post_message(PreflightChecked(key, report))
            if report.blocking:
                return
        try:
            handle = self.orpo_app.run_client().launch(preset)
        except Exception as e:  # noqa: BLE001 - any engine failure is shown, the form stays usable
            self.post_message(LaunchFailed(f"{type(e).__name__}: {e}"))
        else:
            self.post_message(Launched(handle, preset))

    @on(Launched)
    def _launched(self, message: Launched) -> None:
        self.launching = False
        self.app.push_screen(self.orpo_app.monitor_screen(message.handle, message.preset))

    @on(LaunchFailed)
    def _launch_failed(self, message: LaunchFailed) -> None:
        self.launching = False
        self.checking = False
        self.notify(message.error, title="Launch failed", severity="error", timeout=10)

    @on(PreflightChecked)
    def _preflight_checked(self, message: PreflightChecked) -> None:
        self.checking = False
        self.remember_preflight(message.key, message.report)
        if message.report.blocking:
            self.launching = False
            self._refuse_launch(message.report)
        elif message.report.warnings:
            n = len(message.report.warnings)
            self.notify(f"{message.report.warnings[0]}" + (f" (and {n - 1} more)" if n > 1 else "")
                        + "; f4 shows the report", title=f"Preflight: {n} warning{'s' * (n > 1)}",
                        severity="warning", timeout=8)

    def _refuse_launch(self, report: PreflightReport) -> None:
        n = len(report.blocking)
        self.app.push_screen(ProblemsScreen(f"Launch refused: preflight found {n} blocking problem{'s' * (n > 1)}",
                                            preflight_problems(report)), self._jump_to_problem)

    # ------------------------------------------------------------ preflight

    def preflight_runner(self) -> PreflightRunner:
        """The app's check (`OrpoApp.preflight_runner`, a fake in tests), else the real one."""
        return getattr(self.app, "preflight_runner", None) or default_preflight_runner

    def last_preflight(self, key: tuple[str, ...] | None = None) -> PreflightReport | None:
        """The last report if it was made for the form as it is now (or for `key`)."""
        if self._preflight is None:
            return None
        made_for, report = self._preflight
        return report if made_for == (key or preflight_key(self.preset)) else None

    def remember_preflight(self, key: tuple[str, ...], report: PreflightReport) -> None:
        self._preflight = (key, report)
        self._update_status()

    def apply_values(self, values: dict[str, Any]) -> Preset:
        """Put `values` in the form (as a load does: no Changed round trip), recheck, return the preset."""
        with self.prevent(Input.Changed, Select.Changed, Switch.Changed):
            for key, value in values.items():
                self.parse_errors.pop(key, None)
                presets.set_value(self.preset, key, value)
                self.row(key).show(value)
        self.revalidate()
        return self.preset.copy()

    def action_preflight(self) -> None:
        preset = self.preset.copy()
        self.app.push_screen(PreflightScreen(preset, runner=self.preflight_runner(),
                                             report=self.last_preflight(preflight_key(preset)),
                                             on_report=self.remember_preflight, on_apply=self.apply_values))

    def _jump_to_problem(self, key: str | None) -> None:
        if key:
            self.focus_field(key)

    def action_show_problems(self) -> None:
        problems = self.current_problems()
        if not problems:
            self.notify("No problems: the preset is ready to launch.")
            return
        self.app.push_screen(ProblemsScreen(f"{len(problems)} problems", problems), self._jump_to_problem)

    def action_show_changes(self) -> None:
        where = display_path(self.preset_path) if self.preset_path else "the defaults"
        self.app.push_screen(DiffScreen(f"Changes since {where}", self.changes(), before="loaded", after="form"))

    def action_pick_slice(self) -> None:
        self.show_section("accelerator")

        def picked(name: str | None) -> None:
            if not name:
                return
            if name == "cpu":
                self.set_field("accelerator.kind", "cpu")
                self.set_field("accelerator.type", "cpu")
            else:
                self.set_field("accelerator.kind", "tpu")
                self.set_field("accelerator.type", name)
            self.focus_field("accelerator.type")

        self.app.push_screen(SlicePickerScreen(self.preset.accelerator.type), picked)

    def action_open_preset(self) -> None:
        def picked(path: Path | None) -> None:
            if path is None:
                return
            try:
                loaded = read_preset(path)
            except PresetError as e:
                self.notify(str(e), title="Cannot open preset", severity="error", timeout=10)
                return
            changes = self.changes()
            if not changes:
                self._opened(loaded, path)
                return
            self.app.push_screen(
                DiffScreen(f"Discard {len(changes)} unsaved change{'s' * (len(changes) > 1)}?", changes,
                           confirm="Discard", before="loaded", after="form (will be lost)"),
                lambda ok: self._opened(loaded, path) if ok else None)

        self.app.push_screen(PresetPickerScreen(self.preset_dirs, self.preset_path), picked)

    def _opened(self, loaded: Preset, path: Path) -> None:
        self.load_preset(loaded, path)
        self.notify(f"Opened {display_path(path)}")

    def _refuse_write(self, verb: str) -> bool:
        problems = self.current_problems()
        if problems:
            self.app.push_screen(ProblemsScreen(f"{verb} refused: fix {len(problems)} problem"
                                                f"{'s' * (len(problems) > 1)} first", problems),
                                 self._jump_to_problem)
        return bool(problems)

    def action_save(self) -> None:
        if self.preset_path is None:
            self.action_save_as()
            return
        if self._refuse_write("Save"):
            return
        self.write(self.preset.copy(), self.preset_path)

    def action_save_as(self) -> None:
        if self._refuse_write("Save"):
            return
        default = self.save_dir / f"{self.preset.name or 'preset'}.toml"

        def chosen(path: Path | None) -> None:
            if path is None:
                return
            rebased, moved = rebase_paths(self.preset, path.parent)
            self.write(rebased, path, moved)

        self.app.push_screen(SaveAsScreen(default, self.save_dir), chosen)

    def write(self, preset: Preset, path: Path, moved: list[tuple[str, Any, Any]] | None = None) -> None:
        """Save `preset` to `path`, first showing what an overwrite or a path rebase changes."""
        title, rows = "", list(moved or [])
        if path.exists():
            try:
                on_disk = read_preset(path)
            except PresetError as e:
                rows = [("file", e.reason, "replaced by this preset")]
            else:
                rows = presets.diff(on_disk, preset)
            title = f"Overwrite {display_path(path)}?"
            if not rows:
                self._written(preset, path)
                return
        elif rows:
            title = f"Save {display_path(path)}: relative paths made absolute for the new folder"
        if not rows:
            self._written(preset, path)
            return
        self.app.push_screen(DiffScreen(title, rows, confirm="Save", before="on disk" if path.exists() else "form",
                                        after="to be saved"),
                             lambda ok: self._written(preset, path) if ok else None)

    def _written(self, preset: Preset, path: Path) -> None:
        try:
            presets.save(preset, path)
        except OSError as e:
            self.notify(f"{display_path(path)}: {e}", title="Save failed", severity="error", timeout=10)
            return
        preset.base_dir = path.resolve().parent
        self.load_preset(preset, path)
        self.notify(f"Saved {display_path(path)}")

    # ------------------------------------------------------------ palette

    def palette_commands(self) -> list[PaletteCommand]:
        cmds = [
            PaletteCommand("Launch run", "Start a run with this preset and watch it", self.action_launch),
            PaletteCommand("Preflight: check the dataset", "Tokenized example, lengths, truncation and bad pairs "
                           "for this preset (key f4)", self.action_preflight),
            PaletteCommand("Open preset", "Pick a preset from the preset folders", self.action_open_preset),
            PaletteCommand("Save preset", "Save to the preset's file (shows changes first)", self.action_save),
            PaletteCommand("Save preset as", "Save to a new file", self.action_save_as),
            PaletteCommand("Pick TPU slice", "Choose the accelerator from the slice catalog", self.action_pick_slice),
            PaletteCommand("Show changes", "Fields that differ from the loaded preset", self.action_show_changes),
            PaletteCommand("Show problems", "Every problem with the preset", self.action_show_problems),
        ]
        for name, title in SECTIONS:
            cmds.append(PaletteCommand(f"Go to section: {title}", f"Show the {title} form",
                                       lambda n=name: self.show_section(n, focus=True), discover=False))
        for key, spec in FIELD_SPECS.items():
            cmds.append(PaletteCommand(f"Edit {key}", spec.help, lambda k=key: self.focus_field(k), discover=False))
        return cmds


def summarize(p: Preset, environ: Mapping[str, str] | None = None) -> Content:
    """A few lines describing the run, for wide terminals."""
    a, o, d = p.accelerator, p.orpo, p.dataset
    if a.kind == "tpu":
        try:
            target = accelerators.tpu_slice(a.type).describe()
        except KeyError:
            target = f"{a.type} (unknown slice)"
    elif a.kind == "cpu":
        target = f"local CPU x{a.count}"
    else:
        target = f"{a.count} x {a.type}"
    data = d.id or ", ".join(f"{split}: {len(files)} file{'s' * (len(files) != 1)}"
                             for split, files in d.data_files.items()) or "none"
    steps = f"{o.max_training_steps} steps" if o.max_training_steps else f"{o.num_train_epochs} epoch(s)"
    lines = [
        ("model", f"{p.model.id or '(none)'} ({p.model.dtype})"),
        ("data", data + (f", eval on {d.eval_split}" if d.eval_split else "")),
        ("target", target + (f" via {a.ray_address}" if a.ray_address else "")),
        ("batch", f"{o.total_batch_size} pairs/step, max {o.max_length} tokens"),
        ("length", steps),
        ("orpo", f"beta {o.beta:g}, lr {o.learning_rate:g} -> {o.learning_rate_end:g} {o.scheduler}"),
        ("saves", f"{p.output.save_directory}, every {p.output.save_steps} steps"),
    ]
    parts: list[Any] = [("Run", "bold")]
    for label, text in lines:
        parts += ["\n", (f"{label:<7}", "dim"), text]
    parts += ["\n\n", ("Secrets", "bold")]
    for name, is_set in presets.secret_status(p, environ).items():
        parts += ["\n", ("● " if is_set else "○ ", "$text-success" if is_set else "$text-warning"),
                  name, (" set" if is_set else " not set", "dim")]
    parts.append("\n")
    return Content.assemble(*parts)


__all__ = ["ConfigureScreen", "FieldRow", "Launched", "LaunchFailed", "PreflightChecked", "ProblemsScreen",
           "SlicePickerScreen", "preflight_problems", "summarize"]
