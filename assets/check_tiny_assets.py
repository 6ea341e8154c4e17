#!/usr/bin/env python
"""Check that the tiny assets load through the same code paths as hub assets.

Usage::

    .venv/bin/python assets/check_tiny_assets.py              # tokenizer, dataset, EasyDeL load, 5-step ORPO
    .venv/bin/python assets/check_tiny_assets.py --no-train   # skip the ORPO training run
    .venv/bin/python assets/check_tiny_assets.py --steps 10   # longer training run

Steps:

1. ``transformers.AutoTokenizer`` loads ``tiny-qwen3``; chat template, pad/eos ids, vocab size.
2. ``datasets.load_dataset("json", ...)`` loads the preference set with the
   ``mlabonne/orpo-dpo-mix-40k`` columns; no chosen equals its rejected; lengths.
3. ``easydel.AutoEasyDeLModelForCausalLM.from_pretrained`` loads the checkpoint
   (attention ``AUTO``, falling back to ``VANILLA``); its logits are compared
   with the torch model's.
4. A short ``ed.ORPOTrainer`` run (CPU is fine) with the settings the console uses.

Exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "tiny-qwen3"
DATA_FILES = {
    "train": str(HERE / "preferences" / "train.jsonl"),
    "test": str(HERE / "preferences" / "test.jsonl"),
}
COLUMNS = {"source", "prompt", "question", "chosen", "rejected"}


def check_tokenizer():
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    cfg = AutoConfig.from_pretrained(str(MODEL_DIR))
    print(f"[tokenizer] {type(tok).__name__} len={len(tok)} pad={tok.pad_token!r}/{tok.pad_token_id} "
          f"eos={tok.eos_token!r}/{tok.eos_token_id} bos={tok.bos_token!r}/{tok.bos_token_id}")
    assert len(tok) == cfg.vocab_size == 512, (len(tok), cfg.vocab_size)
    assert tok.pad_token_id == cfg.pad_token_id == 0
    assert tok.eos_token_id == cfg.eos_token_id == 2
    assert tok.convert_tokens_to_ids("<|endoftext|>") == cfg.bos_token_id == 0
    assert tok.convert_tokens_to_ids("<|im_start|>") == 1
    msgs = [{"role": "user", "content": "What is 7 + 5?"}, {"role": "assistant", "content": "7 + 5 = 12."}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    gen = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    print(f"[tokenizer] chat template: {text!r}")
    print(f"[tokenizer] generation prompt: {gen!r}")
    assert text == "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n7 + 5 = 12.<|im_end|>\n"
    assert gen == "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    print(f"[tokenizer] {len(ids)} tokens: {tok.convert_ids_to_tokens(ids)}")
    return tok


def check_dataset(tok):
    from datasets import load_dataset

    ds = load_dataset("json", data_files=DATA_FILES)
    print(f"[dataset] {ds}")
    for split, n in (("train", 320), ("test", 32)):
        assert set(ds[split].column_names) == COLUMNS, ds[split].column_names
        assert ds[split].num_rows == n
    prompts = {split: set(ds[split]["prompt"]) for split in ds}
    assert not prompts["train"] & prompts["test"], "train/test prompts overlap"
    lens = []
    for split in ds:
        for row in ds[split]:
            assert row["chosen"] != row["rejected"]
            assert row["prompt"] == row["question"] == row["chosen"][0]["content"] == row["rejected"][0]["content"]
            for key in ("chosen", "rejected"):
                assert [m["role"] for m in row[key]] == ["user", "assistant"]
                lens.append(len(tok(tok.apply_chat_template(row[key], tokenize=False), add_special_tokens=False)["input_ids"]))
    # Split the way EasyDeL's ORPO/DPO transform does: prompt = user turn + generation prompt,
    # completion = rest of the rendered conversation + an appended eos.
    p_lens, c_lens = [], []
    for split in ds:
        for row in ds[split]:
            p_text = tok.apply_chat_template(row["chosen"][:1], tokenize=False, add_generation_prompt=True)
            p_lens.append(len(tok(p_text, add_special_tokens=False)["input_ids"]))
            for key in ("chosen", "rejected"):
                full = tok.apply_chat_template(row[key], tokenize=False)
                c_lens.append(len(tok(full[len(p_text):], add_special_tokens=False)["input_ids"]) + 1)
    print(f"[dataset] prompt tokens max={max(p_lens)} (limit 32); completion tokens incl. eos max={max(c_lens)} (limit 32)")
    assert max(p_lens) <= 32 and max(c_lens) <= 32
    print(f"[dataset] first row: {ds['train'][0]}")
    print(f"[dataset] templated conversation tokens: max={max(lens)} mean={sum(lens) / len(lens):.1f} (limit 64)")
    assert max(lens) < 64
    return ds


def check_easydel(steps: int, train: bool, tok, ds):
    t0 = time.time()
    import easydel as ed
    import jax
    import jax.numpy as jnp
    import numpy as np

    print(f"[easydel] import {time.time() - t0:.1f}s; easydel {ed.__version__}, jax {jax.__version__}, devices {jax.devices()}")

    def load(attn, **extra):
        cfg_extra = extra.pop("config_extra", {})
        return ed.AutoEasyDeLModelForCausalLM.from_pretrained(
            str(MODEL_DIR),
            dtype=jnp.float32,
            param_dtype=jnp.float32,
            precision=jax.lax.Precision.DEFAULT,
            auto_shard_model=True,
            sharding_axis_dims=(1, -1, 1, 1, 1),
            config_kwargs=ed.EasyDeLBaseConfigDict(
                freq_max_position_embeddings=128,
                mask_max_position_embeddings=128,
                attn_mechanism=attn,
                gradient_checkpointing=ed.EasyDeLGradientCheckPointers.NONE,
                **cfg_extra,
            ),
            partition_axis=ed.PartitionAxis(kv_head_axis="tp"),
            **extra,
        )

    def logits_of(m, ids):
        with m.mesh:  # EasyDeL modules must run under their mesh
            out = m(input_ids=jnp.asarray([ids], dtype=jnp.int32))
        return np.asarray(out.logits, dtype=np.float32)

    import torch
    from transformers import AutoModelForCausalLM

    ids = tok(tok.apply_chat_template(ds["train"][0]["chosen"], tokenize=False), add_special_tokens=False)["input_ids"]
    hf = AutoModelForCausalLM.from_pretrained(str(MODEL_DIR), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits.numpy()

    def compare(tag, logits):
        d = np.abs(ref - logits)
        agree = float((ref.argmax(-1) == logits.argmax(-1)).mean())
        print(f"[easydel] {tag}: logits {logits.shape}; max |easydel - torch| = {d.max():.2e} "
              f"(position 0: {d[0, 0].max():.2e}); argmax agreement {agree:.0%}; |torch logits| max {np.abs(ref).max():.2f}")
        assert logits.shape == ref.shape
        return d

    # 1) The call the console makes (AUTO attention; VANILLA if AUTO fails).
    model = None
    for attn in (ed.AttentionMechanisms.AUTO, ed.AttentionMechanisms.VANILLA):
        t0 = time.time()
        try:
            m = load(attn)
            logits = logits_of(m, ids)
        except Exception as e:  # noqa: BLE001 - report and fall back
            print(f"[easydel] attn_mechanism={attn} FAILED: {type(e).__name__}: {e}")
            continue
        perf = m.model.layers[0].self_attn.attention_performer
        print(f"[easydel] loaded {type(m).__name__} with attn_mechanism={attn} in {time.time() - t0:.1f}s; "
              f"attention impl {type(perf.impl).__name__}, runtime dtype {jnp.dtype(perf.metadata.runtime_dtype)}")
        model = m
        break
    if model is None:
        raise SystemExit("EasyDeL could not load the tiny model")
    # EasyDeL defaults: torch checkpoint read as float16, AUTO attention -> bf16 activations,
    # RoPE table in bf16. So expect ~1e-3 differences here, not 1e-6.
    d = compare("as loaded by the console", logits)
    assert d.max() < 1e-2, d.max()

    # 2) Strict parity: float32 everywhere EasyDeL lets us choose. Position 0 (no RoPE rotation)
    # must match exactly; later positions differ only by EasyDeL's bf16 RoPE table.
    strict = load(
        ed.AttentionMechanisms.VANILLA,
        torch_dtype=torch.float32,
        config_extra=dict(attn_dtype=jnp.float32, kvdtype=jnp.float32),
    )
    d = compare("strict fp32 (VANILLA, attn_dtype=fp32, torch_dtype=fp32)", logits_of(strict, ids))
    assert d[0, 0].max() < 1e-5 and d.max() < 2e-3, d.max()
    del strict
    if not train:
        return

    out_dir = tempfile.mkdtemp(prefix="orpo-tiny-")
    args = ed.ORPOConfig(
        model_name="tiny-qwen3-orpo",
        total_batch_size=4,
        max_prompt_length=32,
        max_completion_length=32,
        max_length=64,
        max_training_steps=steps,
        progress_bar_type="json",
        use_wandb=False,
        save_directory=out_dir,
        do_last_save=False,
        do_eval=False,
        learning_rate=1e-3,
        learning_rate_end=1e-4,
        optimizer=ed.EasyDeLOptimizers.ADAMW,
        scheduler=ed.EasyDeLSchedulers.COSINE,
        loss_config=ed.LossConfig(z_loss=0.0),
        track_memory=False,
        log_steps=1,
        report_steps=1,
    )
    t0 = time.time()
    trainer = ed.ORPOTrainer(arguments=args, model=model, processing_class=tok, train_dataset=ds["train"])
    print(f"[orpo] trainer built in {time.time() - t0:.1f}s")

    # Time each step by wrapping the step function. If the trainer AOT-compiles it
    # (``fn.lower(...).compile()``), the wrapper compiles the real function and times that.
    step_times = []
    compile_times = []

    class TimedStep:
        def __init__(self, fn):
            self.fn = fn

        def lower(self, *a, **k):
            s = time.time()
            self.fn = self.fn.lower(*a, **k).compile()
            compile_times.append(time.time() - s)
            return self

        def compile(self):
            return self

        def __call__(self, *a, **k):
            s = time.time()
            res = jax.block_until_ready(self.fn(*a, **k))
            step_times.append(time.time() - s)
            return res

    trainer.sharded_training_step_function = TimedStep(trainer.sharded_training_step_function)

    # Show what the trainer will actually feed the model (its transformed source).
    src = trainer._train_source
    ex = next(iter(src.open_shard(src.shard_names[0])))
    n = int(sum(ex["chosen_attention_mask"]))
    chosen_ids = [int(i) for i in ex["chosen_input_ids"][:n]]
    n_prompt = int(sum(ex["prompt_attention_mask"]))
    print(f"[orpo] tokenized pair 0: prompt {n_prompt}/{len(ex['prompt_input_ids'])} tokens (left-padded), "
          f"chosen {n}/{len(ex['chosen_input_ids'])} tokens (right-padded)")
    print(f"[orpo] chosen sequence decoded: {tok.decode(chosen_ids)!r}")
    print(f"[orpo] chosen sequence ends with tokens {tok.convert_ids_to_tokens(chosen_ids[-3:])}")
    lab = [int(x) for x in ex["chosen_labels"][:n]]
    print(f"[orpo] labels: first {sum(1 for x in lab if x == -100)} (prompt) tokens masked with -100")

    t0 = time.time()
    output = trainer.train()
    total = time.time() - t0
    print(f"[orpo] train() returned {type(output).__name__} after {total:.1f}s")
    if compile_times:
        print(f"[orpo] AOT compile of the train step: {[round(t, 1) for t in compile_times]}s")
    else:
        print("[orpo] no AOT compile: the first step includes the JIT compile")
    if step_times:
        print(f"[orpo] {len(step_times)} steps, mean {sum(step_times) / len(step_times):.3f}s/step; "
              f"each: {[round(t, 3) for t in step_times]}")
    assert len(step_times) == steps, (len(step_times), steps)
    shutil.rmtree(out_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description="Check the tiny assets")
    parser.add_argument("--no-train", action="store_true", help="skip the ORPO training run")
    parser.add_argument("--no-easydel", action="store_true", help="only check tokenizer and dataset")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tok = check_tokenizer()
    ds = check_dataset(tok)
    if not args.no_easydel:
        check_easydel(args.steps, not args.no_train, tok, ds)
    print("ALL CHECKS PASSED")


if __name__ == "__main__":
    sys.exit(main())
