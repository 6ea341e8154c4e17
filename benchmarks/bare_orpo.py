"""The baseline: one ORPO run as a plain in-process EasyDeL script, no Ray, no orpo-tui.

Written the way the seed tutorial's `main()` is (tokenizer, model, dataset,
`ORPOConfig`, `ORPOTrainer(...).train()`), but run directly in this process.
Every value comes from the spec `orpo_tui.job.resolve.resolved(preset)`
produces, i.e. exactly what orpo-tui's trainer receives for the same preset.

The only addition: `log_metrics` records `time.time()` after EasyDeL's own
logging, the same point in the loop where orpo-tui's Reporter stamps `time`,
so steps/s are measured the same way on both sides.

    python benchmarks/bare_orpo.py SPEC.json OUT.json [ENDPOINT TOKEN]

With ENDPOINT and TOKEN (a diagnostic of bench_trainer_overhead.py) the
script also does what orpo-tui's trainer does besides training, over its
metric channel: a `channel.Reporter` with the output tee, every
`log_metrics` call sent, token counts, stop checks. No Ray.
"""

from __future__ import annotations

import json
import sys
import time

T_PROCESS = time.time()


def main(spec_path: str, out_path: str, endpoint: str | None = None, token: str | None = None) -> None:
    marks: dict[str, float] = {"process": T_PROCESS}
    spec = json.loads(open(spec_path).read())

    import easydel as ed
    import jax
    from datasets import load_dataset
    from jax import numpy as jnp
    from transformers import AutoTokenizer

    marks["imported"] = time.time()

    def enum(name: str):
        cls_name, _, member = name.partition(".")
        cls = getattr(ed, cls_name)
        return cls("") if cls_name == "EasyDeLGradientCheckPointers" and member == "NONE" else cls[member]

    processor = AutoTokenizer.from_pretrained(spec["tokenizer"])
    if processor.pad_token_id is None:
        processor.pad_token_id = processor.eos_token_id
    marks["tokenizer"] = time.time()

    m = spec["model"]
    ck = m["config_kwargs"]
    model = ed.AutoEasyDeLModelForCausalLM.from_pretrained(
        m["pretrained_model_name_or_path"],
        dtype=getattr(jnp, m["dtype"].split(".")[-1]),
        param_dtype=getattr(jnp, m["param_dtype"].split(".")[-1]),
        precision=getattr(jax.lax.Precision, m["precision"].split(".")[-1]),
        auto_shard_model=m["auto_shard_model"],
        sharding_axis_dims=tuple(m["sharding_axis_dims"]),
        config_kwargs=ed.EasyDeLBaseConfigDict(
            freq_max_position_embeddings=ck["freq_max_position_embeddings"],
            mask_max_position_embeddings=ck["mask_max_position_embeddings"],
            attn_mechanism=enum(ck["attn_mechanism"]),
            gradient_checkpointing=enum(ck["gradient_checkpointing"]),
        ),
        partition_axis=ed.PartitionAxis(**m["partition_axis"]),
    )
    marks["model"] = time.time()

    d = spec["dataset"]
    train_dataset = load_dataset(d["path"], data_files={d["split"]: d["data_files"][d["split"]]}, split=d["split"])
    if d.get("max_examples"):
        train_dataset = train_dataset.select(range(min(int(d["max_examples"]), len(train_dataset))))
    marks["dataset"] = time.time()

    o = dict(spec["orpo"])
    o["optimizer"] = enum(o["optimizer"])
    o["scheduler"] = enum(o["scheduler"])
    o["loss_config"] = ed.LossConfig(**o["loss_config"])
    arguments = ed.ORPOConfig(**o)

    step_times: list[tuple[int, float, float, float]] = []
    reporter = None
    if endpoint:
        import numpy as np

        from orpo_tui.job.channel import Reporter
        from orpo_tui.job.train import _token_counts

        reporter = Reporter(endpoint, token or "")
        reporter.capture_output()

    class TimedORPOTrainer(ed.ORPOTrainer):
        def log_metrics(self, metrics, pbar, step, mode="train", **kwargs):
            super().log_metrics(metrics, pbar, step, mode, **kwargs)
            if reporter is not None:
                reporter.metric(step, mode, metrics)
            if mode == "train":
                step_times.append((int(step), time.time(), float(metrics.get("train/execution_time", "nan")),
                                   float(metrics.get("train/train_step_time", "nan"))))

        if reporter is not None:
            def on_step_start(self, state, step):
                reporter.stop_requested()
                return super().on_step_start(state, step)

            def _execute_train_step(self, state, batch):
                reporter.count_tokens(_token_counts(np, batch))
                return super()._execute_train_step(state, batch)

    trainer = TimedORPOTrainer(arguments=arguments, model=model, processing_class=processor,
                               train_dataset=train_dataset, eval_dataset=None)
    marks["trainer"] = time.time()
    trainer.train()
    marks["done"] = time.time()
    if reporter is not None:
        reporter.close()
    with open(out_path, "w") as fh:
        json.dump({"marks": marks, "steps": step_times, "devices": jax.device_count(),
                   "backend": jax.default_backend()}, fh)


if __name__ == "__main__":
    main(*sys.argv[1:5])
