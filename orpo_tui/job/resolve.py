"""A preset turned into the exact arguments EasyDeL receives, as plain data.

`--dry-run` prints these and the training process builds EasyDeL objects from
them, so what a user reviews is what the trainer gets. Enum members are
written as their EasyDeL names (e.g. "EasyDeLOptimizers.ADAMW"); `train.py`
turns them into the real objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orpo_tui import accelerators
from orpo_tui.preset import Preset, is_local_path

# Variables from the launcher's environment that the trainer should see; never secrets.
PASSTHROUGH_ENV = ("WANDB_MODE", "WANDB_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                   "TRANSFORMERS_OFFLINE", "JAX_PLATFORMS", "XLA_FLAGS", "LIBTPU_INIT_ARGS")
PASSTHROUGH_PREFIX = "ORPO_TUI_"


def model_ref(preset: Preset, ref: str) -> str:
    """A model/tokenizer/dataset reference as the worker should load it."""
    return str(preset.resolve(ref)) if is_local_path(ref) else ref


def save_directory(preset: Preset, run_dir: Path | None) -> str:
    s = preset.output.save_directory.strip()
    if "://" in s or os.path.isabs(os.path.expanduser(s)):
        return os.path.expanduser(s)
    return str((run_dir or Path.cwd()) / s)


def model_args(preset: Preset) -> dict[str, Any]:
    """Keyword arguments of `AutoEasyDeLModelForCausalLM.from_pretrained`."""
    m, o = preset.model, preset.orpo
    return {
        "pretrained_model_name_or_path": model_ref(preset, m.id),
        "dtype": f"jnp.{m.dtype}",
        "param_dtype": f"jnp.{m.param_dtype}",
        "precision": f"jax.lax.Precision.{m.precision.upper()}",
        "auto_shard_model": m.auto_shard_model,
        "torch_dtype": f"torch.{m.load_dtype}",
        "sharding_axis_dims": tuple(m.sharding_axis_dims),
        "config_kwargs": {
            "freq_max_position_embeddings": o.max_length,
            "mask_max_position_embeddings": o.max_length,
            "attn_mechanism": f"AttentionMechanisms.{m.attn_mechanism.upper()}",
            "gradient_checkpointing": f"EasyDeLGradientCheckPointers.{m.gradient_checkpointing.upper()}",
        },
        "partition_axis": {"kv_head_axis": m.kv_head_axis},
    }


def orpo_args(preset: Preset, run_dir: Path | None = None, *, resume: bool = False) -> dict[str, Any]:
    """Keyword arguments of `ORPOConfig`."""
    o, out, lg = preset.orpo, preset.output, preset.logging
    return {
        "num_train_epochs": o.num_train_epochs,
        "total_batch_size": o.total_batch_size,
        "gradient_accumulation_steps": o.gradient_accumulation_steps,
        "do_eval": o.do_eval,
        "evaluation_steps": o.eval_steps or None,
        "use_wandb": lg.use_wandb,
        "wandb_entity": lg.wandb_entity or None,
        "wandb_name": lg.wandb_name or None,
        "do_last_save": out.do_last_save,
        "max_prompt_length": o.max_prompt_length,
        "max_length": o.max_length,
        "max_completion_length": o.max_completion_length,
        "max_training_steps": o.max_training_steps or None,
        "learning_rate": o.learning_rate,
        "learning_rate_end": o.learning_rate_end,
        "warmup_steps": o.warmup_steps,
        "weight_decay": o.weight_decay,
        "beta": o.beta,
        "optimizer": f"EasyDeLOptimizers.{o.optimizer.upper()}",
        "scheduler": f"EasyDeLSchedulers.{o.scheduler.upper()}",
        "loss_config": {"z_loss": o.z_loss},
        "track_memory": lg.track_memory,
        "save_directory": save_directory(preset, run_dir),
        "save_steps": out.save_steps or None,
        "save_total_limit": out.save_total_limit,
        "save_optimizer_state": out.save_optimizer_state,
        "clip_grad": o.clip_grad or None,
        "report_steps": lg.report_steps,
        "log_steps": lg.log_steps,
        "shuffle_seed_train": o.shuffle_seed,
        # A new run never silently continues an old checkpoint in a shared (gs://) folder;
        # `orpo-tui resume RUN` asks for it explicitly.
        "resume_if_possible": resume,
        # "json" because tqdm/rich would draw on a terminal the console owns.
        "progress_bar_type": "json",
    }


def dataset_args(preset: Preset) -> dict[str, Any]:
    """How the worker loads the train and eval sets with `datasets.load_dataset`."""
    d = preset.dataset
    if d.data_files:
        from orpo_tui.preset import DATA_FORMATS

        first = next(iter(d.data_files.values()))[0]
        files = {split: [str(preset.resolve(f)) for f in fs] for split, fs in d.data_files.items()}
        return {"path": DATA_FORMATS[Path(first).suffix.lower()], "data_files": files,
                "split": d.split, "eval_split": d.eval_split or None, "eval_fraction": d.eval_fraction,
                "max_examples": d.max_examples}
    return {"path": model_ref(preset, d.id), "data_files": None, "split": d.split,
            "eval_split": d.eval_split or None, "eval_fraction": d.eval_fraction,
            "max_examples": d.max_examples}


def runtime_env(preset: Preset) -> dict[str, Any]:
    """Ray runtime env of the workers: the preset's non-secret variables and pip packages."""
    env: dict[str, Any] = {"env_vars": dict(preset.accelerator.env)}
    if preset.accelerator.pip:
        env["pip"] = list(preset.accelerator.pip)
    return env


def passthrough_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k in PASSTHROUGH_ENV or k.startswith(PASSTHROUGH_PREFIX)}


def resolved(preset: Preset, run_dir: Path | None = None, *, resume: bool = False) -> dict[str, Any]:
    """Everything the training process needs, as plain data (no secret values)."""
    a = preset.accelerator
    return {
        "preset_name": preset.name,
        "model": model_args(preset),
        "tokenizer": model_ref(preset, preset.model.tokenizer or preset.model.id),
        "dataset": dataset_args(preset),
        "orpo": orpo_args(preset, run_dir, resume=resume),
        "resume": resume,
        "accelerator": {"kind": a.kind, "type": a.type, "count": a.count},
        # Peak bf16 TFLOP/s of the whole slice (None on CPU): the actor's MFU divides by it.
        "peak_tflops": accelerators.peak_tflops(a.kind, a.type, a.count),
        "stop_on_nan": preset.orpo.stop_on_nan,
        "runtime_env": runtime_env(preset),
        "wandb_project": preset.logging.wandb_project or None,
        "secrets": {"hf_token_env": preset.secrets.hf_token_env,
                    "wandb_api_key_env": preset.secrets.wandb_api_key_env},
    }
