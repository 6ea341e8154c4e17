"""Pilot tests of the Configure side: validation as you type, presets, save, launch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.screen import Screen
from textual.widgets import Input, OptionList, Static
from preflight_fakes import FakePreflight
from ui_fakes import (  # noqa: F401 - fixtures
    REPO,
    REPO_PRESETS,
    FakeRunClient,
    fake_client,
    metrics_file,
    preset_workspace,
)

from orpo_tui import preset as presets
from orpo_tui.preset import FIELD_SPECS
from orpo_tui.ui.app import OrpoApp, make_app
from orpo_tui.ui.configure import ConfigureScreen, ProblemsScreen, SlicePickerScreen
from orpo_tui.ui.help_screen import HelpScreen
from orpo_tui.ui.presets_screen import DiffScreen, PresetPickerScreen, SaveAsScreen, format_value

SIZE = (80, 24)
pytestmark = pytest.mark.anyio


class StubMonitor(Screen):
    """Stands in for the Monitor screen: records what it was given."""

    def __init__(self, handle, preset) -> None:
        super().__init__()
        self.handle = handle
        self.preset = preset

    def compose(self):
        yield Static(f"monitor {self.handle.run_id}")


def app_for(path: Path | None, ws: dict[str, Path], client: FakeRunClient | None = None,
            environ: dict[str, str] | None = None) -> OrpoApp:
    client = client or FakeRunClient()
    # A fake preflight: these tests are about the form; tests/test_ui_preflight.py runs the real one.
    return make_app(path, client_factory=lambda: client, preset_dirs=[ws["repo"], ws["user"]],
                    monitor_factory=StubMonitor, environ=environ or {}, preflight_runner=FakePreflight())


def configure(app: OrpoApp) -> ConfigureScreen:
    screen = app.screen_stack[0]
    assert isinstance(screen, ConfigureScreen)
    return screen


def text_of(widget) -> str:
    return str(widget.render())


async def type_into(pilot, screen: ConfigureScreen, key: str, text: str, *, keys: bool = False) -> None:
    """Replace a field's text: key by key, or (faster) as one edit, like a paste."""
    screen.focus_field(key)
    await pilot.pause()
    editor = screen.focused
    assert isinstance(editor, Input)
    if keys:
        await pilot.press("ctrl+u", "ctrl+k", *text)
    else:
        editor.value = text
    await pilot.pause()


async def wait_workers(app: OrpoApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


# ---------------------------------------------------------------- filling the form

@pytest.mark.parametrize("name", ["tiny-cpu", "qwen3-14b-v4-64"])
async def test_loading_a_preset_fills_every_field(name: str, preset_workspace) -> None:
    path = preset_workspace["repo"] / f"{name}.toml"
    expected = presets.load(path)
    app = app_for(path, preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = configure(app)
        for key in FIELD_SPECS:
            assert screen.widget_value(key) == presets.get(expected, key), key
        assert screen.preset == expected
        assert not screen.changes()
        assert screen.problems == []


async def test_open_from_picker_fills_every_field(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, PresetPickerScreen)
        # The picker opens on the current preset; the one above it is qwen3 (files sort by name).
        await pilot.press("up", "enter")
        await pilot.pause()
        screen = configure(app)
        assert app.screen is screen
        expected = presets.load(preset_workspace["repo"] / "qwen3-14b-v4-64.toml")
        for key in FIELD_SPECS:
            assert screen.widget_value(key) == presets.get(expected, key), key
        assert screen.preset_path == (preset_workspace["repo"] / "qwen3-14b-v4-64.toml").resolve()


async def test_new_preset_starts_from_defaults_with_problems_listed(preset_workspace) -> None:
    app = app_for(None, preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = configure(app)
        assert any(p.key == "model.id" for p in screen.problems)
        assert "model.id" in text_of(app.screen.query_one("#status"))


# ---------------------------------------------------------------- validation as you type

@pytest.mark.parametrize(("key", "bad", "reason", "good"), [
    ("orpo.beta", "0", "out of range: must be > 0 and <= 100", "0.2"),
    ("orpo.learning_rate", "-1", "out of range: must be > 0 and <= 1", "0.0005"),
    ("orpo.learning_rate", "fast", "expected a number", "0.001"),
    ("accelerator.type", "v4-7", "unknown slice 'v4-7'", "v4-8"),
])
async def test_invalid_value_shows_reason_and_blocks_launch(key, bad, reason, good, preset_workspace) -> None:
    client = FakeRunClient()
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        if key == "accelerator.type":
            screen.set_field("accelerator.kind", "tpu")
            await pilot.pause()
        await type_into(pilot, screen, key, bad, keys=True)
        row = screen.row(key)
        assert reason in row.reason
        assert row.has_class("-invalid")
        info = row.query_one(".field-info", Static)
        assert reason in text_of(info) and "✗" in text_of(info)
        assert info.region.height >= 2  # help line, then the reason

        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, ProblemsScreen)
        assert app.screen.title_text.startswith("Launch refused")
        listed = [str(p) for p in app.screen.problems]
        assert any(p.startswith(key) and reason in p for p in listed), listed
        assert client.launched == []

        await pilot.press("escape")
        await type_into(pilot, screen, key, good)
        assert row.reason == ""
        assert not row.has_class("-invalid")
        await pilot.press("ctrl+r")
        await wait_workers(app, pilot)
        assert isinstance(app.screen, StubMonitor)
        assert presets.get(client.launched[0], key) == presets.parse_field(key, good)


async def test_cross_field_problem_shows_next_to_its_field(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await type_into(pilot, screen, "orpo.max_prompt_length", "64")
        assert "must be below orpo.max_length (64)" in screen.row("orpo.max_prompt_length").reason
        section_prompt = str(screen.query_one("#sections", OptionList).get_option("orpo").prompt)
        assert "✗1" in section_prompt
        await type_into(pilot, screen, "orpo.max_length", "96")
        assert screen.row("orpo.max_prompt_length").reason == ""
        assert screen.problems == []


async def test_problem_list_jumps_to_the_field(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await type_into(pilot, screen, "orpo.beta", "0")
        await pilot.press("escape")  # back to the section list
        await pilot.pause()
        assert screen.focused is screen.query_one("#sections")
        await pilot.press("f8")
        await pilot.pause()
        assert isinstance(app.screen, ProblemsScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert screen.focused is screen.row("orpo.beta").editor


async def test_changes_are_marked_and_cleared(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await type_into(pilot, screen, "orpo.beta", "0.3")
        row = screen.row("orpo.beta")
        assert row.modified and row.has_class("-modified")
        assert "modified" in text_of(screen.query_one("#title"))
        assert "*" in str(screen.query_one("#sections", OptionList).get_option("orpo").prompt)
        assert screen.changes() == [("orpo.beta", 0.1, 0.3)]
        await pilot.press("f3")
        await pilot.pause()
        assert isinstance(app.screen, DiffScreen) and app.screen.rows == [("orpo.beta", 0.1, 0.3)]
        await pilot.press("escape")
        await type_into(pilot, screen, "orpo.beta", "0.1")
        assert not row.modified
        assert "modified" not in text_of(screen.query_one("#title"))


# ---------------------------------------------------------------- saving

async def test_save_as_writes_toml_that_loads_back_equal(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await type_into(pilot, screen, "orpo.beta", "0.25")
        await type_into(pilot, screen, "accelerator.env", '{XLA_FLAGS = "--x"}')
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, SaveAsScreen)
        app.screen.query_one(Input).value = ""
        await pilot.press(*"mine", "enter")
        await pilot.pause()
        # A different folder: relative asset paths are made absolute, and shown first.
        assert isinstance(app.screen, DiffScreen)
        assert [k for k, _, _ in app.screen.rows] == ["model.id", "dataset.data_files"]
        await pilot.press("y")
        await pilot.pause()
        target = preset_workspace["user"] / "mine.toml"
        loaded = presets.load(target)
        assert loaded == screen.preset
        assert loaded.orpo.beta == 0.25 and loaded.accelerator.env == {"XLA_FLAGS": "--x"}
        assert screen.preset_path == target.resolve()
        assert not screen.changes() and screen.problems == []


async def test_save_shows_diff_before_overwriting(preset_workspace) -> None:
    path = preset_workspace["repo"] / "tiny-cpu.toml"
    original = path.read_text()
    app = app_for(path, preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await type_into(pilot, screen, "orpo.beta", "0.2")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, DiffScreen)
        assert app.screen.rows == [("orpo.beta", 0.1, 0.2)]
        await pilot.press("n")
        await pilot.pause()
        assert path.read_text() == original
        assert screen.changes()

        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert presets.load(path) == screen.preset
        assert presets.load(path).orpo.beta == 0.2
        assert not screen.changes()


async def test_save_refused_while_invalid(preset_workspace) -> None:
    path = preset_workspace["repo"] / "tiny-cpu.toml"
    original = path.read_text()
    app = app_for(path, preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await type_into(pilot, screen, "orpo.beta", "0")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ProblemsScreen)
        assert app.screen.title_text.startswith("Save refused")
    assert path.read_text() == original


# ---------------------------------------------------------------- launch

async def test_launch_pushes_monitor_with_the_form_preset(fake_client, preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, fake_client)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await type_into(pilot, screen, "orpo.beta", "0.2")
        await pilot.press("ctrl+r")
        await wait_workers(app, pilot)
        assert app.screen is not screen
        assert isinstance(app.screen, StubMonitor)
        assert fake_client.launched == [screen.preset]
        assert fake_client.launched[0].orpo.beta == 0.2
        assert fake_client.launched[0].base_dir == (preset_workspace["repo"]).resolve()
        assert app.screen.handle.run_id == "fake-001"
        assert app.screen.preset == screen.preset
        # The handle replays the recorded stream.
        update = app.screen.handle.poll(0)
        assert update.metrics and update.metrics[0].get("loss") > 0


async def test_launch_opens_the_monitor_screen(fake_client, preset_workspace) -> None:
    from orpo_tui.ui.monitor import MonitorScreen

    app = make_app(preset_workspace["repo"] / "tiny-cpu.toml", client_factory=lambda: fake_client,
                   preset_dirs=[preset_workspace["user"]], environ={})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete(app.screen_stack[0].workers)
        await pilot.pause()
        assert isinstance(app.screen, MonitorScreen)
        assert fake_client.launched == [configure(app).preset]


async def test_attach_opens_the_run_monitor(fake_client, preset_workspace) -> None:
    handle = fake_client.launch(presets.load(preset_workspace["repo"] / "tiny-cpu.toml"))
    app = make_app(attach_run=handle, client_factory=lambda: fake_client, monitor_factory=StubMonitor,
                   preset_dirs=[preset_workspace["user"]], environ={})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, StubMonitor) and app.screen.handle is handle
        assert configure(app).preset_path is None


async def test_launch_failure_keeps_the_form(preset_workspace) -> None:
    client = FakeRunClient(fail_with=ConnectionError("no Ray cluster at 10.0.0.1:6379"))
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await pilot.press("ctrl+r")
        await wait_workers(app, pilot)
        assert app.screen is screen
        assert not screen.launching
        assert any("no Ray cluster" in str(n.message) for n in app._notifications)


# ---------------------------------------------------------------- accelerator, secrets, keys

async def test_slice_picker_sets_the_accelerator(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        screen.show_section("accelerator")
        await pilot.pause()
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert isinstance(app.screen, SlicePickerScreen)
        await pilot.press("down", "enter")  # the row under "cpu" is v4-8
        await pilot.pause()
        await pilot.pause()
        assert screen.preset.accelerator.kind == "tpu"
        assert screen.preset.accelerator.type == "v4-8"
        note = text_of(screen.row("accelerator.type").query_one(".field-info"))
        assert "4 chips on 1 host" in note and "32 GiB HBM/chip" in note
        assert screen.problems == []


async def test_secrets_show_only_whether_set(preset_workspace) -> None:
    secret = "hf_FAKE-ui-secret-abcdefghijklmnop"  # a fake
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace,
                  environ={"HF_TOKEN_FOR_EASYDEL": secret})
    async with app.run_test(size=(160, 48)) as pilot:
        screen = configure(app)
        screen.show_section("secrets")
        await pilot.pause()
        hf = text_of(screen.row("secrets.hf_token_env").query_one(".field-info"))
        wandb = text_of(screen.row("secrets.wandb_api_key_env").query_one(".field-info"))
        assert "HF_TOKEN_FOR_EASYDEL is set" in hf
        assert "WANDB_API_KEY_FOR_EASYDEL is not set" in wandb
        assert secret not in app.export_screenshot()


async def test_help_lists_keys(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")  # the section list has focus, so ? is not typed
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.text()
        for key in ("ctrl+r", "ctrl+o", "ctrl+s", "f2", "ctrl+t", "f3", "f8", "f1", "ctrl+p", "ctrl+q"):
            assert key in text, key
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfigureScreen)


async def test_question_mark_types_into_fields(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await type_into(pilot, screen, "description", "why?")
        assert isinstance(app.screen, ConfigureScreen)
        assert screen.preset.description == "why?"
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)


async def test_keyboard_only_walk_through_a_section(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        await pilot.press("down", "down", "down", "down", "enter")  # section list -> ORPO form
        await pilot.pause()
        assert screen.section == "orpo"
        assert screen.focused is screen.row("orpo.num_train_epochs").editor
        await pilot.press("down", "down")
        assert screen.focused is screen.row("orpo.gradient_accumulation_steps").editor
        await pilot.press("up")
        assert screen.focused is screen.row("orpo.total_batch_size").editor
        await pilot.press("escape")
        assert screen.focused is screen.query_one("#sections")


async def test_every_screen_binding_has_id_and_tooltip() -> None:
    for cls in (OrpoApp, ConfigureScreen):
        for binding in cls.BINDINGS:
            assert binding.id and binding.tooltip, binding


async def test_palette_runs_actions(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"save preset as")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SaveAsScreen)


def test_form_text_round_trips_through_parse_field() -> None:
    p = presets.load(REPO_PRESETS / "tiny-cpu.toml")
    p.accelerator.env = {"A": "1", "weird key": 'x "y"'}
    p.accelerator.pip = ["a==1", "b"]
    for key in FIELD_SPECS:
        value = presets.get(p, key)
        assert presets.parse_field(key, format_value(key, value)) == value, key


def test_ui_modules_import_no_engine() -> None:
    code = ("import sys, orpo_tui.ui.app, orpo_tui.ui.configure, orpo_tui.ui.presets_screen, "
            "orpo_tui.ui.help_screen, orpo_tui.ui.commands; "
            "bad = [m for m in ('ray', 'easydel', 'jax', 'eformer', 'orpo_tui.job.client') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
