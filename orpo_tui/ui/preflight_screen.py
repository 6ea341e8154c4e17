"""The Preflight view: what EasyDeL will make of the dataset, before Launch.

`run_preflight` takes seconds (it imports transformers and datasets, loads the
split and tokenizes it), so it runs in a thread worker that posts
`PreflightFinished`; the handler owns the report and draws it. The screen
shows the format, one tokenized pair with its prompt/completion boundary,
length statistics and histograms, truncation at the form's limits with the
95% / 99% suggestions (keys 5 and 9 put them in the form), bad pairs,
warnings and the problems that block a launch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from orpo_tui import preset as presets
from orpo_tui.preflight import PreflightReport, render_histogram, run_preflight
from orpo_tui.preflight import visible as shared_visible
from orpo_tui.preset import Preset
from orpo_tui.ui.commands import PaletteCommand
from orpo_tui.ui.presets_screen import display_path

#: The check behind the view and Launch (`run_preflight`; tests pass a fake).
PreflightRunner = Callable[[Preset], PreflightReport]
#: Puts values in the form (key -> value) and returns the form's preset afterwards.
ApplyValues = Callable[[dict[str, Any]], Preset]
#: Told about every report that arrives, with the `preflight_key` it was made for.
ReportSink = Callable[[tuple[str, ...], PreflightReport], None]

#: The form fields a preflight reads besides `dataset.*`.
PREFLIGHT_FIELDS = ("model.id", "model.tokenizer", "orpo.max_prompt_length", "orpo.max_completion_length",
                    "orpo.max_length")
LENGTH_KEYS = ("max_prompt_length", "max_completion_length", "max_length")
#: Characters of one example part shown before the middle is elided.
EXAMPLE_CHARS = 400
HIST_WIDTH = 30
#: At or above this width the three histograms sit side by side.
WIDE_MIN_WIDTH = 140


def default_preflight_runner(preset: Preset) -> PreflightReport:
    """The real check: `run_preflight` (all pairs, or a fixed sample of a big set)."""
    return run_preflight(preset)


def preflight_key(preset: Preset) -> tuple[str, ...]:
    """Everything a preflight depends on: the dataset and tokenizer fields, the length limits,
    where relative paths resolve, and the size and time of local data files.

    Launch checks again when this differs from the last report's.
    """
    flat = presets.flatten(preset)
    parts = [f"{k}={flat[k]!r}" for k in sorted(flat) if k.startswith("dataset.") or k in PREFLIGHT_FIELDS]
    parts.append(f"base_dir={preset.base_dir}")
    for files in preset.dataset.data_files.values():
        for name in files:
            try:
                st = os.stat(preset.resolve(name))
            except (OSError, ValueError):
                parts.append(f"{name}:missing")
            else:
                parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return tuple(parts)


def suggested_values(report: PreflightReport, pct: int) -> dict[str, int]:
    """The form values that keep `pct`% (95 or 99) of the pairs whole.

    EasyDeL pads every sequence to prompt + completion, and the preset requires
    max_length to hold both, so max_length is at least their sum.
    """
    def pick(name: str) -> int:
        return max(1, int(getattr(report.suggested[name], f"p{pct}")))

    prompt, completion = pick("max_prompt_length"), pick("max_completion_length")
    return {"orpo.max_prompt_length": prompt, "orpo.max_completion_length": completion,
            "orpo.max_length": max(pick("max_length"), prompt + completion)}


def visible(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """Newlines and tabs made visible; the middle of a long text elided (the screen's width)."""
    return shared_visible(text, limit)


def short_source(source: str) -> str:
    """Local files relative to the cwd (or ~); hub ids as they are."""
    parts = []
    for part in source.split(", "):
        parts.append(display_path(Path(part)) if part.startswith("/") else part)
    return ", ".join(parts)


def percent(share: float) -> str:
    return f"{share:.1%}"


# ---------------------------------------------------------------- drawing a report

def summary_content(report: PreflightReport) -> Content:
    checked = (f"{report.n_pairs} of {report.n_total} pairs (fixed sample)" if report.sampled
               else f"all {report.n_pairs} pairs")
    parts: list[Any] = [("Source   ", "dim"), short_source(report.source), ("  split ", "dim"), report.split]
    if report.n_pairs:
        parts += ["\n", ("Checked  ", "dim"), checked, ("  tokenizer ", "dim"), short_source(report.tokenizer),
                  "\n", ("Format   ", "dim"), (report.format, "bold"), f": {report.format_description}"]
    return Content.assemble(*parts)


def problems_content(report: PreflightReport) -> Content:
    parts: list[Any] = []
    for text in report.blocking:
        parts += ["\n" if parts else "", ("✗ blocks launch: ", "bold $text-error"), (text, "$text-error")]
    for text in report.warnings:
        parts += ["\n" if parts else "", ("! warning: ", "bold $text-warning"), text]
    for text in report.notes:
        parts += ["\n" if parts else "", ("· note: ", "dim"), (text, "dim")]
    if report.ok:
        parts = [("✓ Nothing blocks a run", "bold $text-success"), "\n" if parts else "", *parts]
    return Content.assemble(*parts)


EXAMPLE_ROWS = ("prompt", "chosen", "rejected", "sequence")


def example_title(report: PreflightReport) -> Content:
    ex = report.example
    if ex is None:
        return Content("")
    return Content.assemble(
        (f"Example (row {ex.row})", "bold $text-accent"),
        ("  as EasyDeL tokenizes it: ‖ prompt/completion boundary, ", "dim"),
        (f"+{ex.eos_token or 'EOS'}", "bold"), (" the EOS it appends, ✂ where the limits cut", "dim"))


def example_rows(report: PreflightReport) -> dict[str, tuple[str, Content]]:
    """Label and text of each example row: prompt, chosen, rejected, and the whole chosen sequence."""
    ex = report.example
    if ex is None:
        return {}
    eos = ex.eos_token
    if ex.prompt_cut and ex.prompt_text.startswith(ex.prompt_cut):
        prompt = Content.assemble((visible(ex.prompt_cut), "$text-error strike"), ("✂", "bold $text-error"),
                                  (visible(ex.prompt_text[len(ex.prompt_cut):]), "$text-accent"))
    else:
        prompt = Content.styled(visible(ex.prompt_text), "$text-accent")
    sequence = Content.assemble(
        (visible(ex.prompt_text, EXAMPLE_CHARS // 2), "$text-accent"), ("‖", "bold reverse"),
        (visible(ex.chosen_text, EXAMPLE_CHARS // 2), "$text-success"), (f"+{eos}" if eos else "", "bold"))
    return {
        "prompt": (f"prompt   {ex.prompt_tokens:>5} tok", prompt),
        "chosen": (f"chosen   {ex.chosen_tokens:>5} tok",
                   Content.assemble(*completion_parts(ex.chosen_text, ex.chosen_cut, eos, "$text-success"))),
        "rejected": (f"rejected {ex.rejected_tokens:>5} tok",
                     Content.assemble(*completion_parts(ex.rejected_text, ex.rejected_cut, eos, "$text-warning"))),
        "sequence": ("chosen sequence", sequence),
    }


def completion_parts(text: str, cut: str, eos: str, style: str) -> list[Any]:
    """A completion and the EOS EasyDeL appends; ✂ and struck-out text where the limit cuts."""
    if not cut:
        return [(visible(text), style), (f"+{eos}" if eos else "", "bold")]
    full = text + eos
    kept = full[: len(full) - len(cut)] if full.endswith(cut) else full
    return [(visible(kept), style), ("✂", "bold $text-error"),
            (visible(cut, EXAMPLE_CHARS // 2), "$text-error strike")]


LENGTH_ROWS = (("prompt", "prompt"), ("chosen", "chosen (+EOS)"), ("rejected", "rejected (+EOS)"),
               ("total", "prompt+longer"))


def lengths_content(report: PreflightReport) -> Content:
    if not report.lengths:
        return Content("")
    t = report.truncation
    shares = {"prompt": t.prompt_share, "total": t.total_share}
    parts: list[Any] = [(f"{'Lengths (tokens)':<16}{'min':>6}{'p50':>6}{'mean':>8}{'p95':>6}{'p99':>6}"
                         f"{'max':>6}{'limit':>7}{'over':>8}", "bold $text-accent")]
    for key, label in LENGTH_ROWS:
        s = report.lengths.get(key)
        if s is None:
            continue
        share = shares.get(key, s.over_limit / max(1, s.n))
        parts += ["\n", f"{label:<16}{s.min:>6}{s.p50:>6}{s.mean:>8.1f}{s.p95:>6}{s.p99:>6}{s.max:>6}{s.limit:>7}",
                  (f"{percent(share):>8}", "$text-error" if share else "")]
    return Content.assemble(*parts)


def truncation_content(report: PreflightReport, can_apply: bool) -> Content:
    if not report.lengths:
        return Content("")
    t, n = report.truncation, report.n_pairs
    parts: list[Any] = [
        ("Truncated ", "bold $text-accent"),
        (f"{t.any} of {n} pairs ({percent(t.any_share)})", "bold $text-error" if t.any else "bold"),
        "\n", ("  by      ", "dim"), f"prompt {t.prompt} ({percent(t.prompt_share)}) · completion {t.completion} "
        f"({percent(t.completion_share)}) · max_length {t.total} ({percent(t.total_share)})",
        "\n", ("Padding   ", "bold $text-accent"), f"sequences are {report.fill:.0%} real tokens, the rest padding",
        "\n\n", (f"{'Keep whole':<28}{'now':>6}{'95%':>6}{'99%':>6}", "bold $text-accent")]
    now = {"max_prompt_length": report.max_prompt_length, "max_completion_length": report.max_completion_length,
           "max_length": report.max_length}
    for name in LENGTH_KEYS:
        s = report.suggested.get(name)
        if s is None:
            continue
        parts += ["\n", f"{'orpo.' + name:<28}{now[name]:>6}{s.p95:>6}{s.p99:>6}"]
    if report.suggested and can_apply:
        totals = {pct: suggested_values(report, pct)["orpo.max_length"] for pct in (95, 99)}
        raised = [pct for pct in (95, 99) if totals[pct] != getattr(report.suggested["max_length"], f"p{pct}")]
        parts += ["\n", (" 5 ", "bold reverse"), " / ", (" 9 ", "bold reverse"),
                  " put the 95% / 99% lengths in the form and check again"]
        if raised:
            parts += ["\n", ("  max_length then " + " / ".join(str(totals[p]) for p in (95, 99))
                              + " (≥ prompt + completion: EasyDeL pads to their sum)", "dim")]
    return Content.assemble(*parts)


def histogram_content(report: PreflightReport, key: str, width: int = HIST_WIDTH) -> Content:
    s = report.lengths.get(key)
    if s is None or not s.histogram:
        return Content("")
    parts: list[Any] = [(f"{key} tokens", "bold $text-accent"), (f"  ▒ past the limit {s.limit}", "dim")]
    for line in render_histogram(s, width=width):
        label, _, rest = line.partition("│")
        past = "▒" in rest
        parts += ["\n", (label.removeprefix("  "), "dim"), "│", (rest, "$text-error" if past else "$text-accent")]
    return Content.assemble(*parts)


def pairs_content(report: PreflightReport) -> Content:
    if not report.n_pairs:
        return Content("")
    counts = ((report.n_identical, "chosen==rejected"), (report.n_empty, "empty chosen/rejected"),
              (report.n_prompt_twice, "prompt counted twice"), (report.n_empty_prompt, "empty prompt"))
    parts: list[Any] = [("Bad pairs ", "bold $text-accent")]
    for i, (count, what) in enumerate(counts):
        parts += [" · " if i else "", (str(count), "bold $text-warning" if count else "bold"), f" {what}"]
    for rows, what in ((report.identical_rows, "chosen==rejected"), (report.empty_rows, "empty"),
                       (report.prompt_twice_rows, "prompt twice")):
        if rows:
            parts += ["\n", (f"  rows {what}: ", "dim"), ", ".join(map(str, rows))]
    return Content.assemble(*parts)


# ---------------------------------------------------------------- the screen

@dataclass
class PreflightFinished(Message):
    """A check ended: its report, or why it could not run at all."""

    generation: int
    key: tuple[str, ...]
    report: PreflightReport | None
    error: str = ""


class PreflightScreen(Screen[None]):
    """The preflight report of the form's preset; 5 / 9 put the suggested lengths in the form."""

    CSS_PATH = "preflight.tcss"
    HELP_TITLE = "Preflight"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_MIN_WIDTH, "-wide")]
    BINDINGS = [
        Binding("escape", "close", "Back", id="preflight.close", tooltip="Back to the form"),
        Binding("r", "rerun", "Re-run", id="preflight.rerun",
                tooltip="Check again (the dataset or tokenizer files may have changed)"),
        Binding("9", "apply(99)", "Keep 99%", id="preflight.apply99",
                tooltip="Put the lengths that keep 99% of the pairs whole in the form, then check again"),
        Binding("5", "apply(95)", "Keep 95%", id="preflight.apply95",
                tooltip="Put the lengths that keep 95% of the pairs whole in the form, then check again"),
    ]

    running: var[bool] = var(False, init=False)
    """A check is in flight (the body shows a loading indicator)."""

    def __init__(self, preset: Preset, *, runner: PreflightRunner | None = None,
                 report: PreflightReport | None = None, on_report: ReportSink | None = None,
                 on_apply: ApplyValues | None = None) -> None:
        super().__init__()
        self.preset = preset.copy()
        self.runner = runner or default_preflight_runner
        #: The report on screen (None until the first check ends).
        self.report = report
        self.error = ""
        self.on_report = on_report
        self.on_apply = on_apply
        self._generation = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="pf-bar"):
            yield Static(Content.assemble(("orpo-tui", "bold"), " · Preflight · ", (self.preset.name, "bold")),
                         id="pf-title")
            yield Static("", id="pf-state")
        with VerticalScroll(id="pf-body"):
            yield Static("", id="pf-summary", classes="pf-section")
            yield Static("", id="pf-problems", classes="pf-section")
            yield Static("", id="pf-truncation", classes="pf-section")
            with Vertical(id="pf-example", classes="pf-section"):
                yield Static("", id="pf-example-title")
                for name in EXAMPLE_ROWS:
                    with Horizontal(classes="pf-example-row"):
                        yield Static("", id=f"pf-ex-{name}-label", classes="pf-example-label")
                        yield Static("", id=f"pf-ex-{name}", classes="pf-example-text")
            yield Static("", id="pf-lengths", classes="pf-section")
            with Horizontal(id="pf-histograms", classes="pf-section"):
                for key in ("prompt", "chosen", "rejected"):
                    yield Static("", id=f"pf-hist-{key}", classes="pf-hist")
            yield Static("", id="pf-pairs", classes="pf-section")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#pf-body").focus()
        if self.report is None:
            self.check()
        else:
            self._draw()

    # ------------------------------------------------------------ checking

    def check(self) -> None:
        """Run the preflight of `self.preset` (a newer check supersedes an older one)."""
        self._generation += 1
        self.running = True
        self._run(self._generation, self.preset.copy())

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def _run(self, generation: int, preset: Preset) -> None:
        key = preflight_key(preset)
        try:
            report = self.runner(preset)
        except Exception as e:  # noqa: BLE001 - a crashed check is shown, the screen stays usable
            self.post_message(PreflightFinished(generation, key, None, f"{type(e).__name__}: {e}"))
        else:
            self.post_message(PreflightFinished(generation, key, report))

    @on(PreflightFinished)
    def _finished(self, message: PreflightFinished) -> None:
        if message.generation != self._generation:
            return  # a check superseded by a newer one
        self.running = False
        self.error = message.error
        if message.report is not None:
            self.report = message.report
            if self.on_report is not None:
                self.on_report(message.key, message.report)
        else:
            self.notify(message.error, title="Preflight failed", severity="error", timeout=10)
        self._draw()
        self.refresh_bindings()

    def watch_running(self, running: bool) -> None:
        self.query_one("#pf-body").loading = running
        self._paint_state()
        self.refresh_bindings()

    # ------------------------------------------------------------ drawing

    def _paint_state(self) -> None:
        badge = self.query_one("#pf-state", Static)
        report = self.report
        if self.running:
            label, state = "checking…", "checking"
        elif self.error and report is None:
            label, state = "failed", "blocked"
        elif report is None:
            label, state = "", "checking"
        elif report.blocking:
            label, state = f"blocked ({len(report.blocking)})", "blocked"
        elif report.warnings:
            label, state = f"ok, {len(report.warnings)} warning{'s' * (len(report.warnings) > 1)}", "warning"
        else:
            label, state = "ok", "ok"
        badge.update(f" ● {label.upper()} " if label else "")
        badge.set_classes(f"-state-{state}")

    def _draw(self) -> None:
        self._paint_state()
        report = self.report
        if report is None:
            self.query_one("#pf-problems", Static).update(
                Content.styled(f"✗ the check could not run: {self.error}", "$text-error") if self.error else "")
            return
        can_apply = self.on_apply is not None
        self.query_one("#pf-summary", Static).update(summary_content(report))
        self.query_one("#pf-problems", Static).update(problems_content(report))
        self.query_one("#pf-truncation", Static).update(truncation_content(report, can_apply))
        self.query_one("#pf-example-title", Static).update(example_title(report))
        for name, (label, text) in example_rows(report).items():
            self.query_one(f"#pf-ex-{name}-label", Static).update(Content.styled(label, "dim"))
            self.query_one(f"#pf-ex-{name}", Static).update(text)
        self.query_one("#pf-lengths", Static).update(lengths_content(report))
        for key in ("prompt", "chosen", "rejected"):
            self.query_one(f"#pf-hist-{key}", Static).update(histogram_content(report, key))
        self.query_one("#pf-pairs", Static).update(pairs_content(report))
        # Sections with nothing to say (no pairs could be read) take no room.
        self.query_one("#pf-example").display = report.example is not None
        self.query_one("#pf-histograms").display = any(s.histogram for s in report.lengths.values())
        for section in ("#pf-summary", "#pf-truncation", "#pf-lengths", "#pf-pairs"):
            widget = self.query_one(section, Static)
            widget.display = bool(str(widget.render()).strip())

    def text(self) -> str:
        """Everything the view says, as plain text (one widget a paragraph)."""
        return "\n".join(str(w.render()) for w in self.query("#pf-body Static")
                         if all(node.display for node in w.ancestors_with_self if isinstance(node, Widget)))

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply":
            ready = self.on_apply is not None and self.report is not None and bool(self.report.suggested)
            return ready and not self.running or None
        if action == "rerun":
            return not self.running or None
        return True

    def action_rerun(self) -> None:
        if not self.running:
            self.check()

    def action_apply(self, pct: int) -> None:
        if self.on_apply is None or self.report is None or not self.report.suggested or self.running:
            return
        values = suggested_values(self.report, pct)
        self.preset = self.on_apply(values).copy()
        text = ", ".join(f"{k.removeprefix('orpo.')} {v}" for k, v in values.items())
        self.notify(f"{text}; checking again", title=f"Form set to keep {pct}% whole")
        self.check()

    def action_close(self) -> None:
        self.dismiss(None)

    def palette_commands(self) -> list[PaletteCommand]:
        cmds = [PaletteCommand("Preflight: check again", "Re-run the dataset check (key r)", self.action_rerun)]
        if self.check_action("apply", (99,)):
            cmds += [PaletteCommand(f"Preflight: keep {pct}% whole", f"Put the {pct}% lengths in the form (key "
                                    f"{pct % 10})", lambda pct=pct: self.action_apply(pct)) for pct in (99, 95)]
        cmds.append(PaletteCommand("Preflight: back to the form", "Key esc", self.action_close))
        return cmds


__all__ = ["PreflightFinished", "PreflightScreen", "default_preflight_runner", "preflight_key",
           "suggested_values"]
