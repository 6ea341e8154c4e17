"""Dialogs about runs: quitting while runs are live, and a run's preset as text."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class QuitChoice(Enum):
    """What to do with the live runs when leaving the console."""

    STOP = "stop"
    DETACH = "detach"
    CANCEL = "cancel"


@dataclass(frozen=True)
class LiveRun:
    """A run this console follows that has not ended."""

    run_id: str
    state: str


class QuitScreen(ModalScreen[QuitChoice]):
    """Leaving the console while runs are live: stop them (checkpoint first), detach, or stay.

    Quitting never stops a run by itself; only the Stop choice does.
    """

    BINDINGS = [
        Binding("s", "choose('stop')", "Stop runs", id="quit.stop",
                tooltip="Ask each live run to save a checkpoint and stop, then quit"),
        Binding("d", "choose('detach')", "Detach", id="quit.detach",
                tooltip="Quit and leave the runs going; follow them later with orpo-tui attach"),
        Binding("escape,c", "choose('cancel')", "Cancel", id="quit.cancel", tooltip="Stay in the console"),
    ]

    def __init__(self, runs: list[LiveRun]) -> None:
        super().__init__()
        self.runs = list(runs)

    def compose(self) -> ComposeResult:
        n = len(self.runs)
        the_run = "the run" if n == 1 else f"the {n} runs"
        attach = f"orpo-tui attach {self.runs[0].run_id}" if n == 1 else "orpo-tui attach <run-id>"
        listing = Content("\n").join(
            Content.assemble("  ", (r.run_id, "bold"), (f"  {r.state}", "$text-success")) for r in self.runs)
        # Keys first, in a column; the `attach` command on a line of its own (run ids are long).
        options = [
            Option(Content.assemble(("s    ", "bold $text-accent"), (f"Stop {the_run}", "bold"),
                                    " (checkpoint first)"), id=QuitChoice.STOP.value),
            Option(Content.assemble(("d    ", "bold $text-accent"), ("Detach", "bold"),
                                    f" ({the_run} go{'es' * (n == 1)} on;\n     ", (attach, "$text-accent"), ")"),
                   id=QuitChoice.DETACH.value),
            Option(Content.assemble(("esc  ", "bold $text-accent"), ("Cancel", "bold")),
                   id=QuitChoice.CANCEL.value),
        ]
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static(Content.styled(f"{n} run{'s' * (n > 1)} still live", "bold"), classes="dialog-title")
            yield Static(listing, id="quit-runs")
            yield Static(f"Quitting does not stop {the_run}: {'it goes' if n == 1 else 'they go'} on "
                         "without the console.", classes="dialog-note", markup=False)
            yield OptionList(*options, id="quit-choices")

    def on_mount(self) -> None:
        choices = self.query_one(OptionList)
        choices.highlighted = choices.get_option_index(QuitChoice.DETACH.value)
        choices.focus()

    @on(OptionList.OptionSelected, "#quit-choices")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(QuitChoice(event.option.id))

    def action_choose(self, choice: str) -> None:
        self.dismiss(QuitChoice(choice))


class PresetView(ModalScreen[None]):
    """A run's preset, as the TOML it was launched with (secret names only, never values)."""

    BINDINGS = [Binding("escape,p,q", "close", "Close", id="preset-view.close", tooltip="Back")]

    def __init__(self, title: str, toml_text: str) -> None:
        super().__init__()
        self.title_text = title
        self.toml_text = toml_text

    def compose(self) -> ComposeResult:
        with Vertical(id="preset-view", classes="dialog"):
            yield Static(Content.styled(self.title_text, "bold"), classes="dialog-title")
            with VerticalScroll(id="preset-text"):
                yield Static(self.toml_text, markup=False)
            yield Static(Content.styled("↑↓ scroll · esc closes", "dim"), classes="dialog-note")

    def on_mount(self) -> None:
        self.query_one("#preset-text").focus()

    def action_close(self) -> None:
        self.dismiss(None)


__all__ = ["LiveRun", "PresetView", "QuitChoice", "QuitScreen"]
