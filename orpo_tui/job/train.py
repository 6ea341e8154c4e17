"""The training entry: runs on the accelerator hosts, in eformer's forked process.

Builds tokenizer, model and datasets from the resolved preset, runs EasyDeL's
`ORPOTrainer` (subclassed only to report and to obey stop requests), and
streams every `log_metrics` call to the RunActor over `channel.Reporter`.
This is the only module that imports easydel and jax, and only inside
`run_training`.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from orpo_tui.job.channel import Reporter

FAULT_ENV = "ORPO_TUI_FAULT_AT_STEP"  # test hook: raise inside the training loop at this step


def run_training(spec: dict[str, Any], channel: dict[str, str], secrets: dict[str, str],
                 env: dict[str, str]) -> dict[str, Any]:
    """Train one run; returns {"outcome": "succeeded"|"stopped", "checkpoint", "last_step"}."""
    for k, v in env.items():
        os.environ[k] = v
    # Secret values arrive as arguments (never through runtime envs Ray may log).
    if secrets.get("hf_token"):
        os.environ["HF_TOKEN"] = secrets["hf_token"]
    if secrets.get("wandb_api_key"):
        os.environ["WANDB_API_KEY"] = secrets["wandb_api_key"]

    import jax

    reporter = Reporter(channel["endpoint"], channel["token"], primary=jax.process_index() == 0)
    reporter.capture_output()
    try:
        return _train(spec, reporter)
    except BaseException as e:
        reporter.error(f"{type(e).__name__}: {e}".splitlines()[0][:500], traceback.format_exc())
        raise
    finally:
        reporter.close()


def _train(spec: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    import easydel as ed
    import jax
    import numpy as np
    from datasets import load_dataset
    from easydel.infra.errors import EasyDeLBreakRequest
    from jax import numpy as jnp
    from transformers import AutoTokenizer

    reporter.event("phase", phase="loading tokenizer", backend=jax.default_backend(),
                   devices=jax.device_count(), processes=jax.process_count())
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = tokenizer.eos_token_id

    reporter.event("phase", phase="loading model")
    m = spec["model"]
    ck = m["config_kwargs"]
    model = ed.AutoEasyDeLModelForCausalLM.from_pretrained(
        m["pretrained_model_name_or_path"],
        dtype=getattr(jnp, m["dtype"].split(".")[-1]),
        param_dtype=getattr(jnp, m["param_dtype"].split(".")[-1]),
        precision=getattr(jax.lax.Precision, m["precision"].split(".")[-1]),
        auto_shard_model=m["auto_shard_model"],
        torch_dtype=_torch_dtype(m["torch_dtype"]),
        sharding_axis_dims=tuple(m["sharding_axis_dims"]),
        config_kwargs=ed.EasyDeLBaseConfigDict(
            freq_max_position_embeddings=ck["freq_max_position_embeddings"],
            mask_max_position_embeddings=ck["mask_max_position_embeddings"],
            attn_mechanism=_enum(ed, ck["attn_mechanism"]),
            gradient_checkpointing=_enum(ed, ck["gradient_checkpointing"]),
        ),
        partition_axis=ed.PartitionAxis(**m["partition_axis"]),
    )

    reporter.event("phase", phase="loading dataset")
    d = spec["dataset"]
    train_ds = _load_split(load_dataset, d, d["split"])
    eval_ds = _load_split(load_dataset, d, d["eval_split"]) if d["eval_split"] else None

    o = dict(spec["orpo"])
    o["optimizer"] = _enum(ed, o["optimizer"])
    o["scheduler"] = _enum(ed, o["scheduler"])
    o["loss_config"] = ed.LossConfig(**o["loss_config"])
    arguments = ed.ORPOConfig(**o)
    if spec.get("wandb_project"):
        _set_wandb_project(arguments, spec["wandb_project"])

    fault_at = int(os.environ.get(FAULT_ENV, "0") or 0)

    class ConsoleORPOTrainer(ed.ORPOTrainer):
        """EasyDeL's ORPOTrainer, reporting each logged step and obeying stop requests."""

        stop_requested = False

        def log_metrics(self, metrics, pbar, step, mode="train", **kwargs):
            super().log_metrics(metrics, pbar, step, mode, **kwargs)
            reporter.metric(step, mode, metrics)

        def on_step_start(self, state, step):
            if reporter.stop_requested():
                type(self).stop_requested = True
                raise EasyDeLBreakRequest("stop requested from orpo-tui")
            if fault_at and step + 1 == fault_at:
                raise RuntimeError(f"injected fault at step {fault_at} ({FAULT_ENV})")
            return super().on_step_start(state, step)

        def _execute_train_step(self, state, batch):
            reporter.count_tokens(_token_counts(np, batch))
            return super()._execute_train_step(state, batch)

        def _prepare_training_output(self, state, run_exception=None):
            # EasyDeL treats a break request as a crash; a console stop must save and return.
            if isinstance(run_exception, EasyDeLBreakRequest) and self.stop_requested:
                self.arguments.do_last_save = True
                run_exception = None
            return super()._prepare_training_output(state, run_exception)

    reporter.event("phase", phase="preparing trainer")
    trainer = ConsoleORPOTrainer(arguments=arguments, model=model, processing_class=tokenizer,
                                 train_dataset=train_ds, eval_dataset=eval_ds)
    if spec.get("resume"):
        if not trainer._resumed_from_checkpoint:
            raise RuntimeError(f"nothing to resume: no loadable checkpoint in {o['save_directory']}")
        reporter.event("resumed", step=int(jax.device_get(trainer.model_state.step)))
    reporter.event("configured", total_steps=int(trainer.max_training_steps or 0),
                   train_examples=len(train_ds), eval_examples=len(eval_ds) if eval_ds is not None else 0)
    reporter.event("phase", phase="training")
    started = time.time()
    output = trainer.train()
    last_step = int(jax.device_get(output.state.step))
    outcome = "stopped" if ConsoleORPOTrainer.stop_requested else "succeeded"
    reporter.event("finished", outcome=outcome, checkpoint=str(output.checkpoint_path),
                   last_step=last_step, seconds=time.time() - started)
    return {"outcome": outcome, "checkpoint": str(output.checkpoint_path), "last_step": last_step}


def _enum(ed: Any, name: str) -> Any:
    """"EasyDeLOptimizers.ADAMW" -> ed.EasyDeLOptimizers.ADAMW ("...NONE" checkpointing is "")."""
    cls_name, _, member = name.partition(".")
    cls = getattr(ed, cls_name)
    if cls_name == "EasyDeLGradientCheckPointers" and member == "NONE":
        return cls("")
    return cls[member]


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name.split(".")[-1])


def _load_split(load_dataset: Any, d: dict[str, Any], split: str) -> Any:
    if d["data_files"]:
        ds = load_dataset(d["path"], data_files={split: d["data_files"][split]}, split=split)
    else:
        ds = load_dataset(d["path"], split=split)
    if d.get("max_examples"):
        ds = ds.select(range(min(int(d["max_examples"]), len(ds))))
    return ds


def _token_counts(np: Any, batch: dict[str, Any]) -> tuple[int, int]:
    """(real, padded) tokens of the chosen and rejected sequences of a batch."""
    real = padded = 0
    for key in ("chosen_attention_mask", "rejected_attention_mask"):
        if key in batch:
            mask = np.asarray(batch[key])
            real += int(mask.sum())
            padded += int(mask.size)
    return real, padded


def _set_wandb_project(arguments: Any, project: str) -> None:
    """EasyDeL hard-codes the W&B project name; wrap its init to use the preset's."""
    original = arguments.get_wandb_init

    def get_wandb_init():
        import wandb

        real_init = wandb.init

        def init(**kwargs):
            kwargs["project"] = project
            return real_init(**kwargs)

        wandb.init = init
        try:
            return original()
        finally:
            wandb.init = real_init

    object.__setattr__(arguments, "get_wandb_init", get_wandb_init)
