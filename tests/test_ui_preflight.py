"""The Preflight view and the preflight step of Launch.

Most tests answer with `FakePreflight` (a made-up report, instant); the ones
named `..._real_...` run the real `run_preflight` on the shipped tiny assets
(local, a few seconds the first time: transformers and datasets are imported).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import tomli_w
from preflight_fakes import FAKE_BLOCKING, FAKE_WARNING, FakePreflight, fake_report
from textual.screen import Screen
from textual.widgets import LoadingIndicator, Static
from ui_fakes import REPO, FakeRunClient, preset_workspace  # noqa: F401 - fixture

from orpo_tui import preflight as F
from orpo_tui import preset as presets
from orpo_tui.ui.app import OrpoApp, make_app
from orpo_tui.ui.configure import ConfigureScreen, ProblemsScreen
from orpo_tui.ui.preflight_screen import PreflightScreen, preflight_key, suggested_values, visible

SIZE = (80, 24)
pytestmark = pytest.mark.anyio
LENGTHS = ("orpo.max_prompt_length", "orpo.max_completion_length", "orpo.max_length")


class StubMonitor(Screen):
    """Stands in for the Monitor after a launch."""

    def __init__(self, handle, preset) -> None:
        super().__init__()
        self.handle = handle

    def compose(self):
        yield Static(f"monitor {self.handle.run_id}")


class RecordingPreflight:
    """The real `run_preflight`, keeping every report it returned (what the screen got)."""

    def __init__(self) -> None:
        self.reports: list[F.PreflightReport] = []

    def __call__(self, preset: presets.Preset) -> F.PreflightReport:
        report = F.run_preflight(preset)
        self.reports.append(report)
        return report


def app_for(path: Path, ws: dict[str, Path], runner, client: FakeRunClient | None = None) -> OrpoApp:
    client = client or FakeRunClient()
    return make_app(path, client_factory=lambda: client, preset_dirs=[ws["repo"], ws["user"]],
                    monitor_factory=StubMonitor, environ={}, preflight_runner=runner)


def configure(app: OrpoApp) -> ConfigureScreen:
    screen = app.screen_stack[0]
    assert isinstance(screen, ConfigureScreen)
    return screen


async def settle(app: OrpoApp, pilot) -> None:
    """Let every worker finish and the messages they posted be handled."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def open_preflight(app: OrpoApp, pilot) -> PreflightScreen:
    await pilot.press("f4")
    await settle(app, pilot)
    assert isinstance(app.screen, PreflightScreen)
    return app.screen


def plain(text: str) -> str:
    """A text as the view shows it (newlines drawn as ↵; whitespace runs do not matter)."""
    return " ".join(visible(text, 10_000).split())


def screen_words(screen: PreflightScreen) -> str:
    return " ".join(screen.text().split())


# ---------------------------------------------------------------- the real check

async def test_view_shows_the_real_report_of_the_tiny_preset(preset_workspace) -> None:
    runner = RecordingPreflight()
    path = preset_workspace["repo"] / "tiny-cpu.toml"
    app = app_for(path, preset_workspace, runner)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preflight(app, pilot)
        assert len(runner.reports) == 1
        report = runner.reports[0]
        assert screen.report is report
        # The same check run here, on the preset file, agrees with what the view got.
        assert F.run_preflight(presets.load(path)).to_dict() == report.to_dict()
        assert report.ok and report.example is not None

        text = screen_words(screen)
        ex = report.example
        assert f"Example (row {ex.row})" in text
        assert f"prompt {ex.prompt_tokens} tok" in text
        assert f"chosen {ex.chosen_tokens} tok" in text
        assert f"rejected {ex.rejected_tokens} tok" in text
        assert plain(ex.prompt_text) in text
        assert plain(ex.chosen_text) + f"+{ex.eos_token}" in text
        # The boundary between the prompt and the completion in the whole sequence.
        assert plain(ex.prompt_text) + "‖" + plain(ex.chosen_text) in text

        t = report.truncation
        assert f"Truncated {t.any} of {report.n_pairs} pairs ({t.any_share:.1%})" in text
        assert f"completion {t.completion} ({t.completion_share:.1%})" in text
        for name in ("max_prompt_length", "max_completion_length", "max_length"):
            s = report.suggested[name]
            now = getattr(report, name)
            assert f"orpo.{name} {now} {s.p95} {s.p99}" in text
        s = report.lengths["prompt"]
        assert f"prompt {s.min} {s.p50} {s.mean:.1f} {s.p95} {s.p99} {s.max} {s.limit}" in text
        assert f"Format {report.format}" in text
        assert "Nothing blocks a run" in text
        assert f"{report.n_identical} chosen==rejected" in text


def prompt_twice_rows() -> list[dict]:
    """Shipped pairs rewritten so the prompt's user turn also opens chosen and rejected."""
    rows = [json.loads(line) for line in (REPO / "assets" / "preferences" / "train.jsonl").read_text().splitlines()
            if line.strip()][:24]
    return [{"prompt": [r["chosen"][0]], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def preset_on(tmp_path: Path, train: Path, **orpo: int) -> Path:
    data = tomllib.loads((REPO / "presets" / "tiny-cpu.toml").read_text(encoding="utf-8"))
    data["model"]["id"] = str(REPO / "assets" / "tiny-qwen3")
    data["dataset"]["data_files"] = {"train": [str(train)]}
    data["orpo"].update(orpo)
    path = tmp_path / "presets" / "twice.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


async def test_launch_refused_with_the_real_preflight_reason(tmp_path, preset_workspace) -> None:
    train = tmp_path / "twice.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in prompt_twice_rows()), encoding="utf-8")
    path = preset_on(tmp_path, train)
    # The preset itself is valid: only the preflight finds what is wrong with the pairs.
    assert presets.validate(presets.load(path)) == []
    expected = F.run_preflight(presets.load(path))
    assert expected.blocking and "prompt counted twice" in expected.blocking[0]

    runner, client = RecordingPreflight(), FakeRunClient()
    app = app_for(path, preset_workspace, runner, client)
    async with app.run_test(size=SIZE) as pilot:
        screen = configure(app)
        assert screen.problems == []
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert client.launched == []
        assert isinstance(app.screen, ProblemsScreen)
        assert app.screen.title_text.startswith("Launch refused: preflight found")
        assert [p.message for p in app.screen.problems] == expected.blocking
        assert runner.reports[0].blocking == expected.blocking

        await pilot.press("escape")
        await pilot.pause()
        status = str(screen.query_one("#status", Static).render())
        assert "Preflight blocks launch" in status and "prompt counted twice" in status
        # Nothing the check reads changed: Launch is refused again without checking again.
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert isinstance(app.screen, ProblemsScreen)
        assert len(runner.reports) == 1 and client.launched == []


# ---------------------------------------------------------------- the view, with a fake report

async def test_view_shows_a_loading_indicator_and_stays_live_while_checking(preset_workspace) -> None:
    gate = threading.Event()
    runner = FakePreflight(gate=gate)
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, runner)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f4")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, PreflightScreen)
            assert runner.started.wait(5)
            await pilot.pause()
            body = screen.query_one("#pf-body")
            assert screen.running and body.loading
            # What is drawn where the report will be is the loading indicator.
            assert isinstance(screen.get_widget_at(40, 12)[0], LoadingIndicator)
            assert "CHECKING" in str(screen.query_one("#pf-state", Static).render())
            # The check blocks its thread, not the UI: the help screen opens and closes meanwhile.
            await pilot.press("f1")
            await pilot.pause()
            assert app.screen is not screen
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is screen and screen.running
            gate.set()
            await settle(app, pilot)
            assert not screen.running and not body.loading
            assert not isinstance(screen.get_widget_at(40, 12)[0], LoadingIndicator)
            assert screen.report is runner.report
            n = len(runner.report.warnings)
            assert n and f"OK, {n} WARNINGS" in str(screen.query_one("#pf-state", Static).render())
    finally:
        gate.set()  # a failed assertion must not leave the check waiting


async def test_view_lists_blocking_problems_warnings_and_bad_pairs(preset_workspace) -> None:
    report = fake_report(max_prompt_length=8, max_completion_length=8, max_length=16, blocking=[FAKE_BLOCKING])
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, FakePreflight(report))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_preflight(app, pilot)
        text = screen_words(screen)
        assert f"✗ blocks launch: {FAKE_BLOCKING}" in text
        assert f"! warning: {FAKE_WARNING}" in text
        assert "Nothing blocks a run" not in text
        assert "BLOCKED (1)" in str(screen.query_one("#pf-state", Static).render())
        assert "2 chosen==rejected" in text and "rows chosen==rejected: 3, 17" in text
        t = report.truncation
        assert f"Truncated {t.any} of {report.n_pairs} pairs ({t.any_share:.1%})" in text
        # The rejected completion is cut at 8 tokens: the cut text is marked.
        assert "✂<|im_end|>" in text
        # Bins past the limit are drawn with ▒.
        assert "▒" in str(screen.query_one("#pf-hist-prompt", Static).render())


async def test_applying_the_99_suggestion_sets_the_form_and_checks_again(preset_workspace) -> None:
    runner = FakePreflight(fake_report(max_prompt_length=16, max_completion_length=16, max_length=32),
                           follow_limits=True)
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, runner)
    async with app.run_test(size=SIZE) as pilot:
        form = configure(app)
        before = {k: form.widget_value(k) for k in LENGTHS}
        screen = await open_preflight(app, pilot)
        first = screen.report
        want = suggested_values(first, 99)
        assert want != before
        await pilot.press("9")
        await settle(app, pilot)
        assert {k: form.widget_value(k) for k in LENGTHS} == want
        assert {k: presets.get(form.preset, k) for k in LENGTHS} == want
        assert form.problems == []  # re-validated: the suggested lengths form a valid preset
        assert all(form.row(k).modified for k in LENGTHS if want[k] != before[k])
        # Checked again with the new limits, and that report is the one shown.
        assert len(runner.calls) == 2
        assert {k: presets.get(runner.calls[1], k) for k in LENGTHS} == want
        assert screen.report is not first and screen.report.max_length == want["orpo.max_length"]
        assert f"orpo.max_length {want['orpo.max_length']}" in screen_words(screen)

        await pilot.press("5")
        await settle(app, pilot)
        assert {k: form.widget_value(k) for k in LENGTHS} == suggested_values(screen.report, 95)
        assert len(runner.calls) == 3


def test_suggested_max_length_holds_prompt_and_completion() -> None:
    report = fake_report()
    for pct in (95, 99):
        values = suggested_values(report, pct)
        p, c = values["orpo.max_prompt_length"], values["orpo.max_completion_length"]
        assert p == getattr(report.suggested["max_prompt_length"], f"p{pct}")
        assert c == getattr(report.suggested["max_completion_length"], f"p{pct}")
        assert values["orpo.max_length"] == max(getattr(report.suggested["max_length"], f"p{pct}"), p + c)
        preset = presets.Preset()
        for key, value in values.items():
            presets.set_value(preset, key, value)
        assert not [p for p in presets.validate(preset, check_files=False) if p.key.startswith("orpo.max")]


async def test_palette_opens_the_preflight_view(preset_workspace) -> None:
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, FakePreflight())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"preflight")
        await pilot.pause(0.3)  # the palette searches in the background (as in test_ui_configure)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, PreflightScreen)


# ---------------------------------------------------------------- Launch and the preflight

async def test_launch_checks_first_and_only_again_when_inputs_change(preset_workspace) -> None:
    runner, client = FakePreflight(), FakeRunClient()
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, runner, client)
    async with app.run_test(size=SIZE) as pilot:
        form = configure(app)
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert len(runner.calls) == 1 and len(client.launched) == 1
        assert isinstance(app.screen, StubMonitor)
        # The warning is shown, the launch goes on.
        first = runner.report.warnings[0]
        assert any(first in str(n.message) and n.severity == "warning" for n in app._notifications)

        app.pop_screen()
        await pilot.pause()
        form.set_field("orpo.beta", 0.25)  # not read by the preflight
        await pilot.pause()
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert len(runner.calls) == 1 and len(client.launched) == 2

        app.pop_screen()
        await pilot.pause()
        form.set_field("orpo.max_length", 96)
        await pilot.pause()
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert len(runner.calls) == 2 and len(client.launched) == 3
        assert runner.calls[1].orpo.max_length == 96 == client.launched[2].orpo.max_length


async def test_launch_after_the_view_reuses_its_report(preset_workspace) -> None:
    runner, client = FakePreflight(fake_report(blocking=[FAKE_BLOCKING])), FakeRunClient()
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, runner, client)
    async with app.run_test(size=SIZE) as pilot:
        await open_preflight(app, pilot)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, ProblemsScreen)
        assert [p.message for p in app.screen.problems] == [FAKE_BLOCKING]
        # The problem names a field: picking it jumps there.
        assert app.screen.problems[0].key == "orpo.max_prompt_length"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.focused is configure(app).row("orpo.max_prompt_length").editor
        assert len(runner.calls) == 1 and client.launched == []


async def test_a_crashed_check_refuses_the_launch_and_says_why(preset_workspace) -> None:
    runner = FakePreflight(raises=RuntimeError("tokenizer exploded"))
    client = FakeRunClient()
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, runner, client)
    async with app.run_test(size=SIZE) as pilot:
        form = configure(app)
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert client.launched == [] and app.screen is form
        assert not form.launching and not form.checking
        assert any("tokenizer exploded" in str(n.message) for n in app._notifications)


def test_preflight_key_follows_what_the_check_reads(tmp_path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    preset = presets.Preset(base_dir=tmp_path)
    preset.dataset.data_files = {"train": ["train.jsonl"]}
    key = preflight_key(preset)
    other = preset.copy()
    other.orpo.beta = 0.5
    assert preflight_key(other) == key
    for field, value in (("orpo.max_length", 123), ("model.tokenizer", "x/y"), ("dataset.split", "test")):
        changed = preset.copy()
        presets.set_value(changed, field, value)
        assert preflight_key(changed) != key, field
    data.write_text('{"chosen": "a", "rejected": "b"}\n{"chosen": "c", "rejected": "d"}\n', encoding="utf-8")
    assert preflight_key(preset) != key  # the file changed on disk


def test_every_preflight_binding_has_id_and_tooltip() -> None:
    for binding in PreflightScreen.BINDINGS:
        assert binding.id and binding.tooltip, binding


def test_the_real_check_run_by_the_view_loads_no_training_stack() -> None:
    """The view runs `run_preflight` inside the console's process: no easydel, jax or Ray there."""
    code = ("import sys; from orpo_tui import preset; from orpo_tui.ui.preflight_screen import "
            "default_preflight_runner as run; r = run(preset.load(sys.argv[1])); assert r.ok, r.blocking; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'easydel', 'jax', 'jaxlib', 'flax', "
            "'eformer', 'ray'}))")
    result = subprocess.run([sys.executable, "-c", code, str(REPO / "presets" / "tiny-cpu.toml")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


async def test_status_line_says_what_the_last_check_found(preset_workspace) -> None:
    runner = FakePreflight()
    app = app_for(preset_workspace["repo"] / "tiny-cpu.toml", preset_workspace, runner)
    async with app.run_test(size=SIZE) as pilot:
        form = configure(app)

        def status() -> str:
            return str(form.query_one("#status", Static).render())

        assert "f4 checks the dataset" in status()
        await open_preflight(app, pilot)
        await pilot.press("escape")
        await pilot.pause()
        n = len(runner.report.warnings)
        assert f"preflight: {n} warnings (f4)" in status()
        # Another tokenizer: the report no longer describes the form.
        form.set_field("model.tokenizer", str(REPO / "assets" / "tiny-qwen3"))
        await pilot.pause()
        assert "f4 checks the dataset" in status()
