"""The flagship preset reproduces the seed tutorial's script, argument for argument.

The expected values below are those the EasyDeL + Ray ORPO tutorial's script
passes (MODEL_ID, DATASET_ID, TpuAcceleratorConfig("v4-64", ...), the workers'
env vars, `AutoEasyDeLModelForCausalLM.from_pretrained(...)` and
`ORPOConfig(...)`), written as `orpo-tui --dry-run --jsonl` spells them.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from orpo_tui import cli

REPO = Path(__file__).resolve().parents[1]
FLAGSHIP = REPO / "presets" / "qwen3-14b-v4-64.toml"

MAX_LENGTH = 2048 + 2048  # the seed's sequence_length + max_completion_length

# dotted path into the --jsonl document -> the seed's value
SEED: dict[str, Any] = {
    # MODEL_ID / DATASET_ID
    "model.pretrained_model_name_or_path": "Qwen/Qwen3-14B",
    "tokenizer": "Qwen/Qwen3-14B",
    "dataset.path": "mlabonne/orpo-dpo-mix-40k",
    "dataset.data_files": None,
    "dataset.split": "train",
    "dataset.eval_split": None,  # the seed passes eval_dataset=None
    # TpuAcceleratorConfig("v4-64", execution_env={"env_vars": ..., "pip": []})
    "accelerator.kind": "tpu",
    "accelerator.type": "v4-64",
    "runtime_env.env_vars.EASYDEL_AUTO": "1",
    "runtime_env.env_vars.HF_DATASETS_CACHE": "/dev/shm/huggingface-dataset",
    "runtime_env.env_vars.HF_HOME": "/dev/shm/huggingface",
    "runtime_env.env_vars.HF_DATASETS_OFFLINE": "0",
    # AutoEasyDeLModelForCausalLM.from_pretrained(...)
    "model.dtype": "jnp.bfloat16",
    "model.param_dtype": "jnp.bfloat16",
    "model.precision": "jax.lax.Precision.DEFAULT",
    "model.auto_shard_model": True,
    "model.sharding_axis_dims": [1, -1, 1, 1, 1],  # (1, -1, 1, 1, 1); a list once in JSON
    "model.config_kwargs.freq_max_position_embeddings": MAX_LENGTH,
    "model.config_kwargs.mask_max_position_embeddings": MAX_LENGTH,
    "model.config_kwargs.attn_mechanism": "AttentionMechanisms.AUTO",
    "model.config_kwargs.gradient_checkpointing": "EasyDeLGradientCheckPointers.NONE",
    "model.partition_axis.kv_head_axis": "tp",
    # ORPOConfig(...)
    "orpo.num_train_epochs": 1,
    "orpo.total_batch_size": 32,
    "orpo.gradient_accumulation_steps": 1,
    "orpo.do_eval": True,
    "orpo.use_wandb": True,
    "orpo.wandb_entity": None,
    "orpo.do_last_save": True,
    "orpo.max_prompt_length": 2048,
    "orpo.max_length": MAX_LENGTH,
    "orpo.max_completion_length": 2048,
    "orpo.learning_rate": 8e-6,
    "orpo.learning_rate_end": 1e-6,
    "orpo.beta": 0.1,
    "orpo.optimizer": "EasyDeLOptimizers.ADAMW",
    "orpo.scheduler": "EasyDeLSchedulers.COSINE",
    "orpo.loss_config.z_loss": 0.0,
    "orpo.track_memory": False,
    "orpo.save_steps": 1000,
    "orpo.save_total_limit": 0,
    "orpo.save_optimizer_state": False,
    "orpo.clip_grad": 1.0,
    "orpo.report_steps": 10,
    "orpo.log_steps": 1,
    "orpo.progress_bar_type": "json",
}

# Arguments the preset passes that the seed leaves to EasyDeL: they must be EasyDeL 0.3.0's
# defaults (read from easydel/trainers/training_configurations.py), so the run is the same.
EASYDEL_DEFAULTS: dict[str, Any] = {
    "orpo.evaluation_steps": None,
    "orpo.wandb_name": None,
    "orpo.max_training_steps": None,
    "orpo.warmup_steps": 0,
    "orpo.weight_decay": 0.01,
    "orpo.shuffle_seed_train": 64871,
    # from_pretrained's torch checkpoint dtype when none is given (easydel/infra/mixins/bridge.py).
    "model.torch_dtype": "torch.float16",
}

# Where orpo-tui deliberately departs from what the seed gets (with the reason).
DELIBERATE: dict[str, Any] = {
    # EasyDeL defaults to True: the seed would silently continue whatever sits in
    # ./EasyDeL-Checkpoints. A new orpo-tui run starts fresh; resuming is explicit.
    "orpo.resume_if_possible": False,
}

SECRET_NAMES = {"hf_token_env": "HF_TOKEN_FOR_EASYDEL", "wandb_api_key_env": "WANDB_API_KEY_FOR_EASYDEL"}
SECRET_VALUES = {
    "HF_TOKEN_FOR_EASYDEL": "hf_SeedTestDistinctTokenQx7Zr1",
    "WANDB_API_KEY_FOR_EASYDEL": "wandbSeedTestDistinctKey0fKq93Lm",
    "HF_TOKEN": "hf_PlainHfTokenAlsoSecretVv22",
    "WANDB_API_KEY": "plainWandbKeyAlsoSecretPp44",
}


def _dig(doc: dict[str, Any], dotted: str) -> Any:
    obj: Any = doc
    for part in dotted.split("."):
        assert isinstance(obj, dict) and part in obj, f"{dotted}: no {part!r} in the dry run"
        obj = obj[part]
    return obj


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    mp = pytest.MonkeyPatch()
    try:
        for name, value in SECRET_VALUES.items():
            mp.setenv(name, value)
        mp.delenv("ORPO_TUI_RUNS_DIR", raising=False)
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--preset", str(FLAGSHIP), "--dry-run", "--jsonl"])
    finally:
        mp.undo()
    assert code == 0, err.getvalue()
    assert err.getvalue() == ""
    text = out.getvalue()
    for value in SECRET_VALUES.values():
        assert value not in text
    return json.loads(text)


def test_dry_run_jsonl_prints_one_json_document(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--preset", str(FLAGSHIP), "--dry-run", "--jsonl"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert isinstance(doc, dict) and doc["preset_name"] == "qwen3-14b-v4-64"
    assert err == ""
    assert not (tmp_path / "runs").exists(), "a dry run must not create run folders"


@pytest.mark.parametrize("field", list(SEED))
def test_matches_the_seed(spec, field):
    assert _dig(spec, field) == SEED[field]
    assert type(_dig(spec, field)) is type(SEED[field])


@pytest.mark.parametrize("field", list(EASYDEL_DEFAULTS))
def test_extra_arguments_are_easydel_defaults(spec, field):
    assert _dig(spec, field) == EASYDEL_DEFAULTS[field]


def test_worker_env_is_exactly_the_seeds_non_secret_vars(spec):
    env_vars = spec["runtime_env"]["env_vars"]
    assert set(env_vars) == {k.rsplit(".", 1)[1] for k in SEED if k.startswith("runtime_env.env_vars.")}
    assert "HF_TOKEN" not in env_vars and "WANDB_API_KEY" not in env_vars
    assert spec["runtime_env"].get("pip", []) == []  # TPU_PIP_PACKAGES = []


@pytest.mark.parametrize("field", list(DELIBERATE))
def test_deliberate_departures_from_the_seed(spec, field):
    assert _dig(spec, field) == DELIBERATE[field]


def test_save_directory_is_easydels_default_name_under_the_run(spec):
    assert spec["orpo"]["save_directory"].endswith("/<run-id>/EasyDeL-Checkpoints")


def test_secrets_are_only_variable_names(spec):
    assert spec["secrets"] == SECRET_NAMES
    raw = tomllib.loads(FLAGSHIP.read_text(encoding="utf-8"))
    assert raw["secrets"] == SECRET_NAMES
    for name in SECRET_NAMES.values():
        assert name not in raw["accelerator"]["env"]
    assert not {"HF_TOKEN", "WANDB_API_KEY"} & set(raw["accelerator"]["env"])


def test_every_orpo_argument_is_accounted_for(spec):
    """A new ORPOConfig argument must be added to SEED, EASYDEL_DEFAULTS or DELIBERATE, knowingly."""
    covered = {k.split(".")[1] for k in (*SEED, *EASYDEL_DEFAULTS, *DELIBERATE) if k.startswith("orpo.")}
    assert set(spec["orpo"]) - covered == {"save_directory"}


def test_human_dry_run_shows_orpoconfig_and_no_secret(capsys, monkeypatch, tmp_path):
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--preset", str(FLAGSHIP), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "ORPOConfig(" in out
    assert "AutoEasyDeLModelForCausalLM.from_pretrained(" in out
    assert "optimizer=EasyDeLOptimizers.ADAMW," in out
    assert "learning_rate=8e-06," in out
    assert "sharding_axis_dims=(1, -1, 1, 1, 1)," in out
    assert "load_dataset('mlabonne/orpo-dpo-mix-40k', split='train')" in out
    assert "tpu v4-64" in out
    for value in SECRET_VALUES.values():
        assert value not in out and value not in err
    assert "$HF_TOKEN_FOR_EASYDEL" in out and "$WANDB_API_KEY_FOR_EASYDEL" in out


def test_every_model_argument_is_accounted_for(spec):
    covered = {k.split(".", 1)[1] for k in (*SEED, *EASYDEL_DEFAULTS, *DELIBERATE) if k.startswith("model.")}
    flat = {k for k, v in spec["model"].items() if not isinstance(v, dict)}
    flat |= {f"{k}.{sub}" for k, v in spec["model"].items() if isinstance(v, dict) for sub in v}
    assert flat == covered
