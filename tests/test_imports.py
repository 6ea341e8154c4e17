"""The console starts fast: nothing heavy is imported until a run needs it.

Each check runs in a fresh interpreter, so what another test imported does not
count. easydel, jax & co. live only in the training process; textual only in
`orpo_tui/ui/`; Ray only when a run is launched or attached.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "orpo_tui"

HEAVY = ("easydel", "jax", "jaxlib", "flax", "eformer", "torch", "transformers", "datasets")
CORE_API = ("orpo_tui", "orpo_tui.preset", "orpo_tui.accelerators", "orpo_tui.cli",
            "orpo_tui.job.client", "orpo_tui.job.records", "orpo_tui.job.resolve", "orpo_tui.job.store")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


ALL_MODULES = sorted(_module_name(p) for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)
UI_MODULES = [m for m in ALL_MODULES if m == "orpo_tui.ui" or m.startswith("orpo_tui.ui.")]
# Everything outside orpo_tui/ui/; __main__ runs the CLI on import, so it is covered by --help.
CORE_MODULES = [m for m in ALL_MODULES if m not in UI_MODULES and m != "orpo_tui.__main__"]

PROBE = r"""
import json, sys, contextlib, io
mods = json.loads(sys.argv[1])
argvs = json.loads(sys.argv[2])
import importlib
for m in mods:
    importlib.import_module(m)
from orpo_tui import cli
codes = []
for argv in argvs:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            codes.append(cli.main(argv))
    except SystemExit as e:
        codes.append(e.code)
print(json.dumps({"codes": codes, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def probe(modules: list[str], argvs: list[list[str]] = ()) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(modules), json.dumps(list(argvs))],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_module_discovery_sees_the_package():
    assert set(CORE_API) <= set(CORE_MODULES)
    assert "orpo_tui.ui" in UI_MODULES


def test_core_api_and_help_import_nothing_heavy():
    result = probe(list(CORE_API), [["--help"]])
    assert result["codes"] == [0]
    assert [m for m in HEAVY if m in result["loaded"]] == []


def test_dry_runs_import_nothing_heavy_nor_textual_nor_ray():
    argvs = [["--preset", str(REPO / "presets" / "qwen3-14b-v4-64.toml"), "--dry-run"],
             ["--preset", str(REPO / "presets" / "tiny-cpu.toml"), "--dry-run", "--jsonl"],
             ["--preset", str(REPO / "presets" / "no-such.toml"), "--no-ui"]]
    result = probe(["orpo_tui.cli"], argvs)
    assert result["codes"] == [0, 0, 2]
    assert [m for m in (*HEAVY, "textual", "ray") if m in result["loaded"]] == []


def test_core_modules_never_import_textual():
    """Everything outside orpo_tui/ui/ (engine, preset, cli) must work without textual loaded."""
    result = probe(CORE_MODULES, [["--help"]])
    assert "textual" not in result["loaded"]
    assert [m for m in HEAVY if m in result["loaded"]] == []


def test_core_imports_do_not_start_ray_imports():
    result = probe(list(CORE_API), [["--help"]])
    assert "ray" not in result["loaded"]


@pytest.mark.parametrize("module", UI_MODULES)
def test_ui_module_imports_nothing_heavy(module):
    """Every UI module on disk (orpo_tui.ui.app among them once it exists) imports cleanly and light."""
    result = probe([module])
    assert [m for m in HEAVY if m in result["loaded"]] == []


def test_whole_ui_together_imports_nothing_heavy():
    result = probe(UI_MODULES + list(CORE_API), [["--help"]])
    assert [m for m in HEAVY if m in result["loaded"]] == []
