"""`orpo-tui export-script`: the preset as a standalone EasyDeL + Ray script.

The fast tests read the generated script with `ast` and compare what it passes
to EasyDeL with what `resolve` hands orpo-tui's own trainer; the e2e test runs
the exported tiny script on its own, through a local Ray instance it starts.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orpo_tui import cli, export
from orpo_tui import preset as presets
from orpo_tui.job import resolve

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "presets" / "qwen3-14b-v4-64.toml"
TINY = REPO / "presets" / "tiny-cpu.toml"

HF_SECRET = "hf_FAKE-export-secret-doNotLeak-0123456789"  # a fake
WANDB_SECRET = "0ddba11cafe5e3c0ffee0ddba11cafe5e3c0ffee"

# EasyDeL member names back to the names `resolve` writes (the two it spells differently).
MEMBER_TO_RESOLVED = {v: k for k, v in export.ENUM_MEMBER_NAMES.items()}


# ---------------------------------------------------------------- reading the script back

def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise AssertionError(f"not a dotted name: {ast.dump(node)}")


def _value(node: ast.AST, consts: dict[str, Any]) -> Any:
    """The value an expression of the generated script stands for, in `resolve`'s spelling."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, consts)
    if isinstance(node, ast.Name):
        assert node.id in consts, f"{node.id} is not a module-level constant of the script"
        return consts[node.id]
    if isinstance(node, ast.Attribute):
        name = _dotted(node)
        name = name.removeprefix("ed.")
        return MEMBER_TO_RESOLVED.get(name, name)
    if isinstance(node, ast.Tuple):
        return tuple(_value(e, consts) for e in node.elts)
    if isinstance(node, ast.List):
        return [_value(e, consts) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_value(k, consts): _value(v, consts) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Call):
        func = _dotted(node.func)
        if func == "os.path.abspath":
            return os.path.abspath(_value(node.args[0], consts))
        if func in ("ed.LossConfig", "ed.PartitionAxis", "ed.EasyDeLBaseConfigDict"):
            assert not node.args
            return {k.arg: _value(k.value, consts) for k in node.keywords}
    raise AssertionError(f"unexpected expression in the script: {ast.unparse(node)}")


def _constants(tree: ast.Module) -> dict[str, Any]:
    """The script's UPPER_CASE constants, and main()'s simple names (a value too long to inline)."""
    consts: dict[str, Any] = {}
    main = next(s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "main")
    for stmt in [*tree.body, *main.body]:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            hoisted = isinstance(stmt.value, ast.Attribute) and _dotted(stmt.value).startswith("ed.")
            if name.isupper() or hoisted:
                consts[name] = _value(stmt.value, consts)
    return consts


def _call(tree: ast.Module, dotted: str) -> ast.Call:
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _safe_dotted(n.func) == dotted]
    assert len(calls) == 1, f"expected one call of {dotted}, found {len(calls)}"
    return calls[0]


def _safe_dotted(node: ast.AST) -> str:
    try:
        return _dotted(node)
    except AssertionError:
        return ""


def _keywords(call: ast.Call, consts: dict[str, Any]) -> dict[str, Any]:
    assert all(k.arg for k in call.keywords), "no **kwargs in the generated calls"
    return {k.arg: _value(k.value, consts) for k in call.keywords}


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


# ---------------------------------------------------------------- presets under test

def _variant(name: str) -> presets.Preset:
    """The shipped presets and edited copies that exercise every branch of the generator."""
    if name == "seed":
        return presets.load(SEED)
    p = presets.load(TINY)
    if name == "tiny":
        return p
    if name == "tiny-eval-wandb":
        p.dataset.eval_split = "test"
        p.dataset.max_examples = 8
        p.orpo.do_eval = True
        p.orpo.eval_steps = 5
        p.orpo.max_training_steps = 0
        p.orpo.z_loss = 1e-4
        p.orpo.clip_grad = 0.0
        p.model.gradient_checkpointing = "checkpoint_dots_with_no_batch_dims"
        p.model.attn_mechanism = "vanilla"
        p.model.tokenizer = "Qwen/Qwen3-0.6B"
        p.logging.use_wandb = True
        p.logging.wandb_project = "orpo-sweeps"
        p.logging.wandb_entity = "my-team"
        p.output.save_directory = "gs://bucket/orpo/tiny"
        p.accelerator.ray_address = "10.0.0.2:6379"
        p.accelerator.pip = ["sentencepiece"]
        p.accelerator.env = {"HF_HUB_ENABLE_HF_TRANSFER": "1"}
        p.orpo.stop_on_nan = True
        return p
    if name == "gpu":
        p.accelerator.kind, p.accelerator.type, p.accelerator.count = "gpu", "a100", 2
        p.output.save_directory = "/data/ckpt"
        return p
    raise KeyError(name)


VARIANTS = ["seed", "tiny", "tiny-eval-wandb", "gpu"]


@pytest.fixture(params=VARIANTS)
def exported(request):
    p = _variant(request.param)
    text = export.export_script(p)
    tree = ast.parse(text)
    return p, text, tree, _constants(tree)


# ---------------------------------------------------------------- fast tests

def test_script_compiles_and_keeps_to_house_style(exported):
    _, text, _, _ = exported
    compile(text, "exported.py", "exec")
    long = [line for line in text.splitlines() if len(line) > 100]
    assert not long, f"lines over 100 characters: {long}"
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert all(line == line.rstrip() for line in text.splitlines()), "trailing whitespace"


def test_script_does_not_need_orpo_tui(exported):
    _, _, tree, _ = exported
    imports = _imports(tree)
    assert not {m for m in imports if m.split(".")[0] == "orpo_tui"}
    top_level = {m.split(".")[0] for m in _imports(ast.Module(body=[
        s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))], type_ignores=[]))}
    # The launcher imports only Ray and eformer; easydel and jax load inside main(), on the workers.
    assert top_level == {"os", "sys", "ray", "eformer"}


def test_orpo_config_gets_every_resolved_argument(exported):
    p, _, tree, consts = exported
    assert _keywords(_call(tree, "ed.ORPOConfig"), consts) == resolve.orpo_args(p)


def test_model_gets_every_resolved_argument(exported):
    p, _, tree, consts = exported
    call = _call(tree, "ed.AutoEasyDeLModelForCausalLM.from_pretrained")
    assert len(call.args) == 1
    got = {"pretrained_model_name_or_path": _value(call.args[0], consts), **_keywords(call, consts)}
    assert got == resolve.model_args(p)


def test_tokenizer_and_datasets_match_resolve(exported):
    p, _, tree, consts = exported
    spec = resolve.resolved(p)
    tok = _value(_call(tree, "AutoTokenizer.from_pretrained").args[0], consts)
    assert tok == spec["tokenizer"]
    d = spec["dataset"]
    if d["data_files"]:
        assert consts["DATA_FORMAT"] == d["path"] and consts["DATA_FILES"] == d["data_files"]
        assert all(Path(f).is_absolute() for fs in consts["DATA_FILES"].values() for f in fs)
    else:
        assert consts["DATASET_ID"] == d["path"]
    assert consts["TRAIN_SPLIT"] == d["split"]
    assert consts.get("EVAL_SPLIT") == d["eval_split"]
    assert consts.get("MAX_EXAMPLES", 0) == d["max_examples"]
    loads = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _safe_dotted(n.func) == "load_dataset"]
    assert len(loads) == (2 if d["eval_split"] else 1)


def test_accelerator_config_matches_the_preset(exported):
    p, _, tree, consts = exported
    a = p.accelerator
    name = {"tpu": "TpuAcceleratorConfig", "gpu": "GpuAcceleratorConfig", "cpu": "CpuAcceleratorConfig"}[a.kind]
    call = _call(tree, name)
    env = {**p.accelerator.env}
    if a.kind == "tpu":
        assert [_value(x, consts) for x in call.args] == [a.type]
    elif a.kind == "gpu":
        assert _value(next(k.value for k in call.keywords if k.arg == "device_count"), consts) == a.count
        assert _value(next(k.value for k in call.keywords if k.arg == "gpu_model"), consts) == a.type
    else:
        assert _value(next(k.value for k in call.keywords if k.arg == "core_count"), consts) == a.count
    assert consts["WORKER_ENV"] == env
    assert consts.get("PIP_PACKAGES", []) == a.pip


def test_no_secret_value_is_ever_written(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN_FOR_EASYDEL", HF_SECRET)
    monkeypatch.setenv("WANDB_API_KEY_FOR_EASYDEL", WANDB_SECRET)
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("WANDB_API_KEY", WANDB_SECRET)
    for name in VARIANTS:
        text = export.export_script(_variant(name))
        assert HF_SECRET not in text and WANDB_SECRET not in text
        # ... only the preset's variable names, read when the script runs.
        assert 'os.environ.get("HF_TOKEN_FOR_EASYDEL")' in text
        assert 'os.environ.get("WANDB_API_KEY_FOR_EASYDEL")' in text
    out = tmp_path / "seed.py"
    assert cli.main(["export-script", "--preset", str(SEED), "-o", str(out)]) == 0
    assert HF_SECRET not in out.read_text() and WANDB_SECRET not in out.read_text()


def test_custom_secret_env_names_are_used():
    p = presets.load(TINY)
    p.secrets.hf_token_env, p.secrets.wandb_api_key_env = "MY_HF", "MY_WANDB"
    text = export.export_script(p)
    assert 'os.environ.get("MY_HF")' in text and 'os.environ.get("MY_WANDB")' in text
    assert "HF_TOKEN_FOR_EASYDEL" not in text


def test_seed_preset_is_the_tutorials_run():
    text = export.export_script(presets.load(SEED))
    tree = ast.parse(text)
    consts = _constants(tree)
    assert consts["MODEL_ID"] == "Qwen/Qwen3-14B"
    assert consts["DATASET_ID"] == "mlabonne/orpo-dpo-mix-40k"
    assert 'TpuAcceleratorConfig("v4-64", execution_env={"env_vars": WORKER_ENV})' in text
    assert "ed.EasyDeLOptimizers.ADAMW" in text and "ed.LossConfig(z_loss=0.0)" in text
    # The tutorial's line that breaks on easydel 0.3.0 is gone.
    assert "EasyDeLQuantizationMethods" not in text and "quantization" not in text
    # A relative save_directory is resolved where the script is run, and says so.
    assert 'SAVE_DIRECTORY = os.path.abspath("EasyDeL-Checkpoints")' in text
    assert "the directory you run this script from" in text
    assert "@execute(accelerator)\n@ray.remote\ndef main(" in text
    assert text.rstrip().splitlines()[-1].startswith("    print(")
    assert 'if __name__ == "__main__":' in text
    assert "ray.init()" in text
    assert "presets/qwen3-14b-v4-64.toml" not in text  # no source given: no path in the header
    assert 'from the preset "qwen3-14b-v4-64"' in text


def test_ray_address_and_wandb_project_from_the_preset():
    text = export.export_script(_variant("tiny-eval-wandb"))
    assert 'ray.init(address=os.environ.get("RAY_ADDRESS") or "10.0.0.2:6379")' in text
    assert 'WANDB_PROJECT = "orpo-sweeps"' in text
    assert 'object.__setattr__(arguments, "get_wandb_init", get_wandb_init)' in text
    assert 'SAVE_DIRECTORY = "gs://bucket/orpo/tiny"' in text
    assert "TOKENIZER_ID = \"Qwen/Qwen3-0.6B\"" in text
    no_project = export.export_script(presets.load(TINY))
    assert "WANDB_PROJECT" not in no_project and "get_wandb_init" not in no_project


def test_local_cpu_script_starts_its_own_ray():
    text = export.export_script(presets.load(TINY))
    assert 'ray.init(address="local", num_cpus=max(os.cpu_count() or 1, 2))' in text
    assert 'if os.environ.get("RAY_ADDRESS"):\n    ray.init()' in text


def test_cli_prints_or_writes_the_script(tmp_path, capsys):
    assert cli.main(["export-script", "--preset", str(SEED)]) == 0
    printed = capsys.readouterr().out
    compile(printed, "stdout.py", "exec")
    assert str(SEED) in printed  # the CLI names the preset file in the header
    out = tmp_path / "sub" / "train_qwen.py"
    assert cli.main(["export-script", "--preset", str(SEED), "-o", str(out)]) == 0
    written = out.read_text()
    assert written == printed.replace("orpo_qwen3_14b_v4_64.py", "train_qwen.py")
    assert os.access(out, os.X_OK)
    assert "train_qwen.py" in capsys.readouterr().err


def test_cli_refuses_a_bad_preset_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text().replace("beta = 0.1", "beta = 0.0"))
    assert cli.main(["export-script", "--preset", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "orpo.beta" in err[0]
    assert cli.main(["export-script", "--preset", str(tmp_path / "missing.toml")]) == 2


# ---------------------------------------------------------------- e2e

@pytest.mark.e2e
@pytest.mark.timeout(360)
def test_exported_tiny_script_trains_on_its_own(tmp_path):
    """The exported tiny script runs to a checkpoint alone: its own Ray, no orpo-tui import."""
    script = tmp_path / "orpo_tiny.py"
    script.write_text(export.export_script(presets.load(TINY)))
    assert "orpo_tui" not in {m.split(".")[0] for m in _imports(ast.parse(script.read_text()))}

    # No RAY_* variable (RAY_ADDRESS, an auth mode a Ray head fixture set ...), no PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    env["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "0"
    started = time.monotonic()
    # -I: isolated mode, so neither the cwd nor PYTHON* variables can supply orpo_tui.
    proc = subprocess.Popen([sys.executable, "-I", str(script)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"exported script still running after 300 s:\n{out[-4000:]}")
    seconds = time.monotonic() - started
    assert proc.returncode == 0, out[-6000:]
    assert "training finished; last checkpoint:" in out
    assert "Traceback" not in out
    runs = sorted((tmp_path / "checkpoints").glob("*/run-*"))
    assert runs, f"no checkpoint under {tmp_path / 'checkpoints'}:\n{out[-4000:]}"
    assert any(r.name == "run-30" for r in runs)  # max_training_steps = 30, do_last_save
    print(f"exported tiny script ran in {seconds:.1f} s")


def test_eval_fraction_is_held_out_like_the_trainer_does():
    p = presets.load(TINY)
    p.dataset.eval_split = ""
    p.dataset.eval_fraction = 0.1
    src = export.export_script(p)
    compile(src, "exported.py", "exec")
    assert "train_dataset.train_test_split(test_size=0.1, seed=64871)" in src
    assert 'train_dataset, eval_dataset = held_out["train"], held_out["test"]' in src
