"""The key list (`?` / F1): generated from the bindings, so it cannot drift from them."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

KEY_NAMES = {"question_mark": "?", "escape": "esc", "space": "space", "enter": "enter"}

#: Keys that belong to Textual's widgets rather than to a binding of ours.
MOVING_AROUND = [
    ("tab / shift+tab", "Next / previous field"),
    ("up / down", "Move in a list; on the section list, switch the form"),
    ("enter / right", "From the section list into its form"),
    ("enter / space", "Open a choice list; toggle a switch"),
    ("esc", "Back to the section list (or close a dialog)"),
    ("ctrl+u / ctrl+k", "Clear a field left / right of the cursor"),
]


def key_text(binding: Binding) -> str:
    return " / ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in binding.key.split(","))


def bindings_of(node: object) -> list[Binding]:
    return [b for b in getattr(type(node), "BINDINGS", []) if isinstance(b, Binding) and b.description]


class HelpScreen(ModalScreen[None]):
    """Every key of the screen underneath and of the app, with what it does."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close", id="help.close", tooltip="Close the key list")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        groups = [
            (getattr(self.under, "HELP_TITLE", None) or "This screen", [(key_text(b), b.tooltip or b.description)
                                                                        for b in bindings_of(self.under)]),
            ("Everywhere", [(key_text(b), b.tooltip or b.description) for b in bindings_of(self.app)]),
            ("Moving around", MOVING_AROUND),
        ]
        parts: list = []
        for title, rows in groups:
            if not rows:
                continue
            if parts:
                parts.append("\n\n")
            parts.append((title, "bold $text-accent"))
            for keys, what in rows:
                parts += ["\n", (f"{keys:<18}", "bold"), " ", what]
        with Vertical(id="dialog", classes="dialog help-dialog"):
            yield Static(Content.styled("Keys", "bold"), classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(Content.assemble(*parts))
            yield Static(Content.styled("esc closes", "dim"), classes="dialog-note")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
