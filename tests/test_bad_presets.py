"""Bad presets are refused before anything launches: exit 2 and ONE line on stderr.

Each case starts from the tiny CPU preset (with absolute paths to the repo's
assets), breaks one thing, and runs `orpo-tui --preset FILE --dry-run` and
`--no-ui`. The line must name the preset file and the offending key (or the
line number for TOML syntax errors), and never carry a traceback.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from orpo_tui import cli
from orpo_tui import preset as P

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
EXIT_USAGE = 2


def good_preset() -> dict[str, Any]:
    """The tiny CPU preset's content with its relative paths made absolute."""
    data = tomllib.loads((REPO / "presets" / "tiny-cpu.toml").read_text(encoding="utf-8"))
    data["model"]["id"] = str(ASSETS / "tiny-qwen3")
    data["dataset"]["data_files"] = {
        split: [str((REPO / "presets" / f).resolve()) for f in files]
        for split, files in data["dataset"]["data_files"].items()}
    assert Path(data["model"]["id"]).is_dir()
    assert all(Path(f).is_file() for fs in data["dataset"]["data_files"].values() for f in fs)
    return data


@dataclass
class Case:
    id: str
    #: Mutates the good preset's data (and may write files under tmp_path); returns the key
    #: the error line must name. A returned str starting with "line " is matched as is.
    breaks: Callable[[dict[str, Any], Path], str]
    #: Raw TOML text instead of the dumped data (syntax errors).
    raw: Callable[[str], str] | None = None
    modes: tuple[str, ...] = ("--dry-run", "--no-ui")


def _set(section: str, key: str, value: Any) -> Callable[[dict[str, Any], Path], str]:
    def breaks(data: dict[str, Any], tmp: Path) -> str:
        data.setdefault(section, {})[key] = value
        return f"{section}.{key}"
    return breaks


def _tpu(type_: str, batch: int | None = None) -> Callable[[dict[str, Any], Path], str]:
    def breaks(data: dict[str, Any], tmp: Path) -> str:
        data["accelerator"].update(kind="tpu", type=type_)
        if batch is not None:
            data["orpo"]["total_batch_size"] = batch
            return "orpo.total_batch_size"
        return "accelerator.type"
    return breaks


def _unknown_top_level(data, tmp):
    data["trainer"] = {"epochs": 3}
    return "trainer"


def _unknown_in_section(data, tmp):
    data["orpo"]["betta"] = 0.1
    return "orpo.betta"


def _prompt_not_below_max(data, tmp):
    data["orpo"].update(max_prompt_length=64, max_completion_length=1, max_length=64)
    return "orpo.max_prompt_length"


def _prompt_plus_completion_too_long(data, tmp):
    data["orpo"].update(max_prompt_length=40, max_completion_length=40, max_length=64)
    return "orpo.max_completion_length"


def _missing_dataset_file(data, tmp):
    data["dataset"]["data_files"]["train"] = [str(tmp / "nowhere" / "train.jsonl")]
    return "dataset.data_files.train"


def _no_rejected_column(data, tmp):
    f = tmp / "chosen_only.jsonl"
    f.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    data["dataset"]["data_files"]["train"] = [str(f)]
    return "dataset.data_files.train"


def _missing_model_folder(data, tmp):
    data["model"]["id"] = str(tmp / "no-such-model")
    return "model.id"


def _both_dataset_sources(data, tmp):
    data["dataset"]["id"] = "mlabonne/orpo-dpo-mix-40k"
    return "dataset.id"


def _no_dataset_source(data, tmp):
    data["dataset"].pop("data_files")
    data["dataset"]["id"] = ""
    return "dataset.id"


def _use_wandb_without_key(data, tmp):
    data["logging"]["use_wandb"] = True
    return "logging.use_wandb"


def _toml_syntax(text: str) -> str:
    lines = text.splitlines()
    lines.insert(3, "beta = = 0.1")  # line 4
    return "\n".join(lines) + "\n"


CASES = [
    Case("toml-syntax-error", lambda d, t: "line 4", raw=_toml_syntax),
    Case("unknown-top-level-key", _unknown_top_level),
    Case("unknown-key-in-section", _unknown_in_section),
    Case("string-for-int", _set("orpo", "total_batch_size", "32")),
    Case("bool-for-float", _set("orpo", "beta", True)),
    Case("int-list-with-string", _set("model", "sharding_axis_dims", [1, "-1", 1, 1, 1])),
    Case("section-not-a-table", lambda d, t: (d.update(orpo=3), "orpo")[1]),
    Case("beta-zero", _set("orpo", "beta", 0.0)),
    Case("beta-negative", _set("orpo", "beta", -0.1)),
    Case("learning-rate-zero", _set("orpo", "learning_rate", 0.0)),
    Case("learning-rate-minus-one", _set("orpo", "learning_rate", -1.0)),
    Case("max-prompt-length-not-below-max-length", _prompt_not_below_max),
    Case("prompt-plus-completion-over-max-length", _prompt_plus_completion_too_long),
    Case("unknown-slice-v4-63", _tpu("v4-63")),
    Case("unknown-slice-v9-8", _tpu("v9-8")),
    Case("batch-30-on-v4-64", _tpu("v4-64", batch=30)),
    Case("missing-local-dataset-file", _missing_dataset_file),
    Case("local-dataset-without-rejected", _no_rejected_column),
    Case("missing-local-model-folder", _missing_model_folder),
    Case("dataset-id-and-data-files", _both_dataset_sources),
    Case("dataset-neither-id-nor-files", _no_dataset_source),
    Case("secret-value-instead-of-env-name", _set("secrets", "hf_token_env", "hf_abcdefghijklmnop1234")),
    Case("wandb-key-value-instead-of-env-name",
         _set("secrets", "wandb_api_key_env", "0123456789abcdef0123456789abcdef01234567")),
    Case("secret-in-accelerator-env", lambda d, t: (d["accelerator"].setdefault("env", {}).update(
        HF_TOKEN="hf_abcdefghijklmnop1234"), "accelerator.env.HF_TOKEN")[1]),
    Case("sharding-two-minus-ones", _set("model", "sharding_axis_dims", [1, -1, 1, -1, 1])),
    Case("sharding-four-axes", _set("model", "sharding_axis_dims", [1, -1, 1, 1])),
    Case("unknown-optimizer", _set("orpo", "optimizer", "sgd")),
    Case("unknown-attention", _set("model", "attn_mechanism", "magic")),
    Case("unsupported-save-url", _set("output", "save_directory", "http://example.com/ckpt")),
    # These two used to crash validation with ZeroDivisionError (a traceback, exit 1).
    Case("gradient-accumulation-zero", _set("orpo", "gradient_accumulation_steps", 0)),
    Case("gpu-count-zero", lambda d, t: (d["accelerator"].update(kind="gpu", type="a100", count=0),
                                         "accelerator.count")[1]),
    Case("use-wandb-without-key", _use_wandb_without_key, modes=("--no-ui",)),
]
PARAMS = [pytest.param(c, mode, id=f"{c.id}[{mode[2:]}]") for c in CASES for mode in c.modes]


@pytest.fixture(autouse=True)
def never_launch(monkeypatch):
    """If a case were accepted, --no-ui must not start Ray: fail the test instead."""
    import orpo_tui.job.client as client

    class NoLaunch:
        def __init__(self, *a, **k):
            pytest.fail("a bad preset got past validation and would have launched a run")

    monkeypatch.setattr(client, "RunClient", NoLaunch)
    # Secrets are controlled per test; none set, W&B not offline.
    for name in ("WANDB_MODE", "WANDB_API_KEY_FOR_EASYDEL", "WANDB_API_KEY", "HF_TOKEN_FOR_EASYDEL"):
        monkeypatch.delenv(name, raising=False)


def write_case(case: Case, tmp_path: Path) -> tuple[Path, str]:
    data = copy.deepcopy(good_preset())
    key = case.breaks(data, tmp_path)
    text = tomli_w.dumps(data)
    if case.raw:
        text = case.raw(text)
    path = tmp_path / f"{case.id}.toml"
    path.write_text(text, encoding="utf-8")
    return path, key


def assert_one_line(err: str, out: str, path: Path, key: str) -> str:
    assert out == "", f"nothing belongs on stdout, got {out!r}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {lines!r}"
    assert err.endswith("\n")
    line = lines[0]
    assert line.startswith("orpo-tui: ")
    assert str(path) in line, f"{line!r} does not name the file"
    if key.startswith("line "):
        assert f"(at {key}," in line, f"{line!r} does not give the line number"
    else:
        # "orpo-tui: FILE: KEY: reason" (or "FILE: KEY is ..." for the launch preflight)
        assert re.search(f"{re.escape(str(path))}: {re.escape(key)}[: ]", line), \
            f"{line!r} does not name the key {key!r} after the file"
    return line


def test_good_base_preset_is_accepted(tmp_path, capsys):
    path = tmp_path / "good.toml"
    path.write_text(tomli_w.dumps(good_preset()), encoding="utf-8")
    assert P.validate(P.load(path)) == []
    assert cli.main(["--preset", str(path), "--dry-run"]) == 0
    assert "ORPOConfig(" in capsys.readouterr().out


def test_there_are_enough_cases():
    assert len(CASES) >= 18
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "mode"), PARAMS)
def test_bad_preset_is_one_line_exit_2(case, mode, tmp_path, capsys):
    path, key = write_case(case, tmp_path)
    code = cli.main(["--preset", str(path), mode])
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE, (code, err)
    assert_one_line(err, out, path, key)


@pytest.mark.parametrize(("case", "fragment"), [
    ("unknown-slice-v4-63", "v4 comes in sizes 8, 16, 32, 64"),
    ("unknown-slice-v9-8", "v4-64"),
    ("batch-30-on-v4-64", "30 is not divisible by the 32"),
    ("beta-zero", "must be > 0"),
    ("unknown-optimizer", "one of adamw"),
    ("local-dataset-without-rejected", "rejected"),
    ("secret-value-instead-of-env-name", "looks like a secret value"),
    ("sharding-two-minus-ones", "at most one -1"),
    ("unknown-key-in-section", "unknown key"),
    ("use-wandb-without-key", "$WANDB_API_KEY_FOR_EASYDEL is not set"),
])
def test_the_line_says_why(case, fragment, tmp_path, capsys):
    (c,) = [c for c in CASES if c.id == case]
    path, _ = write_case(c, tmp_path)
    assert cli.main(["--preset", str(path), c.modes[-1]]) == EXIT_USAGE
    assert fragment in capsys.readouterr().err


def test_secret_value_never_echoed(tmp_path, capsys):
    (c,) = [c for c in CASES if c.id == "secret-value-instead-of-env-name"]
    path, _ = write_case(c, tmp_path)
    assert cli.main(["--preset", str(path), "--dry-run"]) == EXIT_USAGE
    assert "hf_abcdefghijklmnop1234" not in capsys.readouterr().err


@pytest.mark.parametrize("wandb_mode", ["offline", "disabled"])
def test_use_wandb_passes_preflight_when_offline(wandb_mode, tmp_path, monkeypatch):
    (c,) = [c for c in CASES if c.id == "use-wandb-without-key"]
    path, _ = write_case(c, tmp_path)
    p = P.load(path)
    assert cli._preflight_secrets(p, {"WANDB_MODE": wandb_mode}) is None
    assert cli._preflight_secrets(p, {"WANDB_API_KEY_FOR_EASYDEL": "set"}) is None
    assert cli._preflight_secrets(p, {}) is not None


def test_use_wandb_without_key_is_fine_for_dry_run(tmp_path, capsys):
    (c,) = [c for c in CASES if c.id == "use-wandb-without-key"]
    path, _ = write_case(c, tmp_path)
    assert cli.main(["--preset", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("mode", ["--dry-run", "--no-ui"])
def test_missing_preset_file(mode, tmp_path, capsys):
    path = tmp_path / "does-not-exist.toml"
    assert cli.main(["--preset", str(path), mode]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert str(path) in err and "no such preset file" in err


@pytest.mark.parametrize("mode", ["--dry-run", "--no-ui"])
def test_preset_path_is_a_folder(mode, tmp_path, capsys):
    assert cli.main(["--preset", str(tmp_path), mode]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert len(err.splitlines()) == 1 and str(tmp_path) in err


@pytest.mark.parametrize("mode", ["--dry-run", "--no-ui"])
def test_preset_not_utf8(mode, tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    assert cli.main(["--preset", str(path), mode]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert len(err.splitlines()) == 1 and str(path) in err


# `python -m orpo_tui`, and the installed `orpo-tui` script where the venv has one.
ENTRY_POINTS = [pytest.param([sys.executable, "-m", "orpo_tui"], id="python-m")] + [
    pytest.param([str(script)], id="console-script")
    for script in [Path(sys.executable).parent / "orpo-tui"] if script.is_file()]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_real_process_prints_one_line_exit_2(entry, tmp_path):
    (c,) = [c for c in CASES if c.id == "beta-zero"]
    path, key = write_case(c, tmp_path)
    bad = tmp_path / "bad.toml"
    path.rename(bad)
    proc = subprocess.run([*entry, "--preset", str(bad), "--no-ui"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert_one_line(proc.stderr, proc.stdout, bad, key)
