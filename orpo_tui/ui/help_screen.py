"""The key list (`?` / F1): generated from the bindings, so it cannot drift from them."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

KEY_NAMES = {"question_mark": "?", "escape": "esc", "space": "space", "enter": "enter"}

#: Keys that belong to Textual's widgets rather than to a binding of ours.
MOVING_AROUND = [
    ("tab / shift+tab", "Next / previous field"),
    ("up / down", "Previous / next field; in a list, move (the section list switches the form)"),
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
        with Vertical(id="dialog", classes="dialog help-dialog"):
            yield Static(Content.styled("Keys", "bold"), classes="dialog-title")
            with VerticalScroll(id="help-body"):
                for title, rows in groups:
                    if not rows:
                        continue
                    yield Static(Content.styled(title, "bold $text-accent"), classes="help-group")
                    for keys, what in rows:
                        with Horizontal(classes="help-row"):
                            yield Static(Content.styled(keys, "bold"), classes="help-key")
                            yield Static(what, classes="help-what")
            yield Static(Content.styled("esc closes", "dim"), classes="dialog-note")

    def text(self) -> str:
        """Everything the key list says, as plain text."""
        return "\n".join(str(w.render()) for w in self.query("#help-body Static"))

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
