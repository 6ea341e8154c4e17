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
    if eval_ds is None and d.get("eval_fraction"):
        held_out = train_ds.train_test_split(test_size=float(d["eval_fraction"]),
                                             seed=spec["orpo"]["shuffle_seed_train"])
        train_ds, eval_ds = held_out["train"], held_out["test"]

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
        evaluated_step = -1  # training step of the weights last evaluated
        finalizing = False
        said_no_eval = False

        def log_metrics(self, metrics, pbar, step, mode="train", **kwargs):
            super().log_metrics(metrics, pbar, step, mode, **kwargs)
            if mode == "eval":
                # EasyDeL logs each eval batch with `step` = the batch's index, then one summary
                # (means over the batches, force_report=True) at the training step: report that one.
                if kwargs.get("force_report"):
                    reporter.metric(self.evaluated_step, mode, metrics)
                return
            reporter.metric(step, mode, metrics)

        def apply_training_hooks(self, metrics):
            # With LossConfig.break_on_nan (EasyDeL's default) a NaN loss skips the update in the
            # step function, then this hook raises a break that `_train_epoch` swallows: the
            # epoch ends as if finished, the NaN step is never logged and the run "succeeds".
            # orpo-tui logs the step instead; the health monitor raises the alert and, with
            # orpo.stop_on_nan, stops the run with a checkpoint.
            if bool(jnp.isnan(metrics.loss)):
                return metrics
            return super().apply_training_hooks(metrics)

        def eval(self, model_state):
            if self.dataloader_eval is None:
                # EasyDeL 0.3.0 crashes here (iter(None)) when do_eval is on without eval data,
                # after the whole training: say so and skip.
                if not self.said_no_eval:
                    self.said_no_eval = True
                    reporter.event("phase", phase="no evaluation: orpo.do_eval is on but there is no eval "
                                                  "split (set dataset.eval_split or dataset.eval_fraction)")
                return
            step = int(jax.device_get(model_state.step))
            # The final evaluation repeats the last periodic one when training ended on an
            # `eval_steps` multiple (same weights, same data); a stop asked to save and return.
            if step == self.evaluated_step or (self.finalizing and self.stop_requested):
                return
            self.evaluated_step = step
            reporter.event("phase", phase=f"evaluating at step {step}", step=step)
            yield from super().eval(model_state)
            if not self.finalizing:
                reporter.event("phase", phase="training")

        def _finalize_training(self, output, run_exception):
            self.finalizing = True
            return super()._finalize_training(output, run_exception)

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
    # By value: some member names differ from their values (e.g. ..._NO_BATCH_DMIS in 0.3.0).
    return cls(member.lower())


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
