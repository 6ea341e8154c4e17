"""A preset as the equivalent standalone EasyDeL + Ray training script.

`orpo-tui export-script --preset FILE [-o OUT]` writes the script an ML
engineer would otherwise keep by hand: the shape of the public EasyDeL ORPO
tutorial (`ray.init()`, an eformer accelerator config, `@execute(config)
@ray.remote def main()`), corrected for EasyDeL 0.3.0 and filled with exactly
the arguments `resolve` hands the console's own trainer. Plain text
generation: no easydel, jax, eformer or ray import here.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from orpo_tui import accelerators
from orpo_tui.job import resolve
from orpo_tui.preset import Preset, is_local_path

MAX_LINE = 100

# ORPOConfig arguments given a named constant at the top of the script (the ones people tune).
HEADLINE_ARGS = ("max_prompt_length", "max_completion_length", "max_length", "total_batch_size",
                 "num_train_epochs", "max_training_steps", "learning_rate", "learning_rate_end",
                 "beta")

ENUM_PREFIXES = ("EasyDeLOptimizers.", "EasyDeLSchedulers.", "AttentionMechanisms.",
                 "EasyDeLGradientCheckPointers.")

# Resolved strings that name a dtype or precision object, written as code.
CODE_PREFIXES = ("jnp.", "jax.lax.Precision.", "torch.")

# EasyDeL 0.3.0 spells two checkpointing members differently from their values.
ENUM_MEMBER_NAMES = {
    "EasyDeLGradientCheckPointers.CHECKPOINT_DOTS_WITH_NO_BATCH_DIMS":
        "EasyDeLGradientCheckPointers.CHECKPOINT_DOTS_WITH_NO_BATCH_DMIS",
    "EasyDeLGradientCheckPointers.DOTS_WITH_NO_BATCH_DIMS_SAVEABLE":
        "EasyDeLGradientCheckPointers.DOTS_WITH_NO_BATCH_DIMS_AVAILABLE",
}

ORPO_COMMENTS = {
    "beta": "weight of the odds-ratio term against the NLL term",
    "resume_if_possible": "True continues from the newest checkpoint in SAVE_DIRECTORY",
    "progress_bar_type": 'one log line per step; "tqdm" draws a bar instead',
}

# What orpo-tui forwards from the launcher's environment to the trainer (never secrets).
FORWARDED_ENV = tuple(resolve.PASSTHROUGH_ENV)


def export_script(preset: Preset, source: str | os.PathLike | None = None,
                  script_name: str | None = None) -> str:
    """The standalone script that runs the preset's ORPO training (secrets only by env-var name).

    `source` (the preset file) and `script_name` only label the header comment.
    """
    spec = resolve.resolved(preset)
    name = script_name or f"orpo_{re.sub(r'[^A-Za-z0-9_]+', '_', preset.name)}.py"
    parts = [_header(preset, spec, source, name), _imports(spec), _constants(preset, spec),
             _ray_and_accelerator(preset, spec), _main(spec, preset.orpo.stop_on_nan), _entry(preset)]
    # One blank line between blocks; two before and after the top-level def (PEP 8).
    text = "\n".join(p.strip("\n") + "\n" for p in parts[:4]) + "\n\n"
    return text + "\n\n".join(p.strip("\n") + "\n" for p in parts[4:])


def run_cli(args: argparse.Namespace) -> int:
    """`orpo-tui export-script`: print the script, or write it to `-o FILE`."""
    from orpo_tui import preset as presets

    try:
        p = presets.load(args.preset)
    except presets.PresetError as e:
        print(f"orpo-tui: {e}", file=sys.stderr)
        return 2
    out = getattr(args, "output", None)
    text = export_script(p, source=Path(args.preset).resolve(), script_name=out and Path(out).name)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        out.chmod(0o755)
    except OSError as e:
        print(f"orpo-tui: {out}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: run it with `python {out}`", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- rendering

def _py(value: Any) -> str:
    """Python source for a resolved value; EasyDeL enum, dtype and precision names as code."""
    if isinstance(value, str):
        if value.startswith(ENUM_PREFIXES):
            return "ed." + ENUM_MEMBER_NAMES.get(value, value)
        if value.startswith(CODE_PREFIXES):
            return value
        return _str(value)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: f"e{'-' if m[1] == '-' else ''}{m[2]}", repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_str(str(k))}: {_py(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _str(s: str) -> str:
    """A string literal in double quotes (ruff's default style)."""
    r = repr(s)
    if r.startswith("'") and '"' not in s:
        r = '"' + r[1:-1].replace("\\'", "'") + '"'
    return r


def _dict_block(name: str, d: dict[str, Any], indent: str = "") -> list[str]:
    if not d:
        return [f"{indent}{name} = {{}}"]
    lines = [f"{indent}{name} = {{"]
    for k, v in d.items():
        lines.append(f"{indent}    {_str(str(k))}: {_py(v)},")
    lines.append(f"{indent}}}")
    return lines


def _is_relative_save_directory(preset: Preset) -> bool:
    s = preset.output.save_directory.strip()
    return "://" not in s and not os.path.isabs(os.path.expanduser(s))


def _comment_lines(text: str, width: int = 98) -> list[str]:
    """`# `-prefixed lines wrapped to `width`."""
    out, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width and line != "#":
            out.append(line)
            line = "#"
        line += " " + word
    out.append(line)
    return out


# ---------------------------------------------------------------- sections

def _header(preset: Preset, spec: dict[str, Any], source: str | os.PathLike | None,
            script_name: str) -> str:
    a = spec["accelerator"]
    hf, wb = spec["secrets"]["hf_token_env"], spec["secrets"]["wandb_api_key_env"]
    model = preset.model.id if not is_local_path(preset.model.id) else Path(preset.model.id).name
    d = preset.dataset
    data = d.id or ", ".join(Path(f).name for f in d.data_files.get(d.split, []))
    where = f' ({source})' if source else ""
    lines = ["#!/usr/bin/env python3",
             f"# ORPO fine-tuning of {model} on {data}, with EasyDeL 0.3.0 and Ray."]
    lines += _comment_lines(f'Generated by orpo-tui from the preset "{preset.name}"{where}.')
    if preset.description:
        lines += _comment_lines(preset.description)
    lines += [
        "# It runs the same training as `orpo-tui --preset ... --no-ui`, without orpo-tui: edit freely.",
        "#",
        "# Needs easydel==0.3.0 (it brings eformer and ray[default]), plus torch and pillow importable.",
    ]
    if a["kind"] == "tpu":
        lines += [f"# Run it on worker 0 of the {a['type']} slice, with easydel installed on every host",
                  "# and one Ray cluster across the hosts (`ray start --head` on worker 0,",
                  "# `ray start --address=WORKER0_IP:6379` on the others):"]
    elif a["kind"] == "gpu":
        lines += [f"# Run it on a Ray cluster with {a['count']} {a['type']} GPU(s) on one node:"]
    else:
        lines += ["# Run it on this machine; it starts a local Ray instance:"]
    lines += [
        "#",
        f"#     export {hf}=...   # Hugging Face token (private or gated models)",
    ]
    if spec["orpo"]["use_wandb"]:
        lines.append(f"#     export {wb}=...   # W&B API key (or WANDB_MODE=offline)")
    lines += [
        f"#     python {script_name}",
        "#",
        "# With RAY_ADDRESS=HOST:PORT set it joins that Ray cluster instead of starting one.",
        "# Secrets are read from those environment variables when it runs; none is written here.",
    ]
    return "\n".join(lines) + "\n"


def _imports(spec: dict[str, Any]) -> str:
    kind = spec["accelerator"]["kind"]
    config_cls = {"tpu": "TpuAcceleratorConfig", "gpu": "GpuAcceleratorConfig"}.get(kind, "CpuAcceleratorConfig")
    names = ", ".join(sorted([config_cls, "JobSucceeded"]))
    return f"import os\nimport sys\n\nimport ray\nfrom eformer.executor.ray import {names}, execute\n"


def _constants(preset: Preset, spec: dict[str, Any]) -> str:
    m, d, o = spec["model"], spec["dataset"], spec["orpo"]
    lines = ["# Model and data (local paths made absolute)."]
    lines.append(f"MODEL_ID = {_py(m['pretrained_model_name_or_path'])}")
    if spec["tokenizer"] != m["pretrained_model_name_or_path"]:
        lines.append(f"TOKENIZER_ID = {_py(spec['tokenizer'])}")
    if d["data_files"]:
        lines.append(f"DATA_FORMAT = {_py(d['path'])}")
        lines += _dict_block("DATA_FILES", d["data_files"])
    else:
        lines.append(f"DATASET_ID = {_py(d['path'])}")
    lines.append(f"TRAIN_SPLIT = {_py(d['split'])}")
    if d["eval_split"]:
        lines.append(f"EVAL_SPLIT = {_py(d['eval_split'])}")
    if d["max_examples"]:
        lines.append(f"MAX_EXAMPLES = {_py(d['max_examples'])}  # use only the first N pairs of each split")

    lines += ["", "# Lengths, batch and optimisation."]
    for key in HEADLINE_ARGS:
        tail = "  # None: whole epochs" if key == "max_training_steps" and o[key] is None else ""
        lines.append(f"{key.upper()} = {_py(o[key])}{tail}")

    lines.append("")
    save = preset.output.save_directory.strip()
    if _is_relative_save_directory(preset):
        lines += ["# A relative folder, resolved against the directory you run this script from",
                  "# (orpo-tui itself would put it inside the run folder). On a TPU pod use",
                  "# gs://bucket/path, which every host can write."]
        lines.append(f"SAVE_DIRECTORY = os.path.abspath({_str(save)})")
    else:
        lines.append(f"SAVE_DIRECTORY = {_py(o['save_directory'])}")
    if spec["wandb_project"]:
        lines.append(f"WANDB_PROJECT = {_py(spec['wandb_project'])}  # EasyDeL's own is EasyDeL-ORPO")
    return "\n".join(lines) + "\n"


def _ray_and_accelerator(preset: Preset, spec: dict[str, Any]) -> str:
    a, env = spec["accelerator"], spec["runtime_env"]
    lines = ["# Non-secret environment of the training workers (the preset's accelerator.env)."]
    lines += _dict_block("WORKER_ENV", env["env_vars"])
    lines += ["# The launcher's own settings of these reach the workers too, as with orpo-tui.",
              "FORWARDED_ENV = ("]
    lines += [f"    {_str(k)}," for k in FORWARDED_ENV]
    lines += [")",
              "WORKER_ENV.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})",
              ""]
    execution_env = '{"env_vars": WORKER_ENV}'
    if env.get("pip"):
        lines += [f"PIP_PACKAGES = {_py(env['pip'])}", ""]
        execution_env = '{"env_vars": WORKER_ENV, "pip": PIP_PACKAGES}'

    address = preset.accelerator.ray_address.strip()
    if address:
        lines += ["# The preset's Ray cluster; RAY_ADDRESS, when set, takes precedence.",
                  f"ray.init(address=os.environ.get(\"RAY_ADDRESS\") or {_str(address)})"]
    elif a["kind"] == "cpu":
        lines += ["# Join the cluster at $RAY_ADDRESS when set; else start a private local Ray instance",
                  "# (not one `ray start` left running), with a CPU slot for eformer's launcher task",
                  "# besides the trainer's.",
                  "if os.environ.get(\"RAY_ADDRESS\"):",
                  "    ray.init()",
                  "else:",
                  f"    ray.init(address=\"local\", num_cpus=max(os.cpu_count() or 1, {a['count'] + 1}))"]
    else:
        lines += ["# Joins the cluster at $RAY_ADDRESS, else the one `ray start` runs on this machine,",
                  "# else starts a local Ray instance.",
                  "ray.init()"]

    lines.append("")
    if a["kind"] == "tpu":
        s = accelerators.tpu_slice(a["type"])
        lines.append(f"# {s.chips} chips on {s.hosts} host{'s' * (s.hosts > 1)}: eformer runs main() once on each.")
        lines += _call_lines("accelerator = TpuAcceleratorConfig", [_str(s.name), f"execution_env={execution_env}"])
    elif a["kind"] == "gpu":
        lines += _call_lines("accelerator = GpuAcceleratorConfig",
                             [f"device_count={a['count']}", f"gpu_model={_str(a['type'])}",
                              f"execution_env={execution_env}"])
    else:
        lines += _call_lines("accelerator = CpuAcceleratorConfig",
                             [f"core_count={a['count']}", f"execution_env={execution_env}"])
    return "\n".join(lines) + "\n"


def _call_lines(head: str, args: list[str]) -> list[str]:
    """`head(args)` on one line, else the arguments on a line of their own (ruff format's way)."""
    one = f"{head}({', '.join(args)})"
    if len(one) <= MAX_LINE:
        return [one]
    inner = f"    {', '.join(args)}"
    if len(inner) <= MAX_LINE:
        return [f"{head}(", inner, ")"]
    return [f"{head}(", *(f"    {a}," for a in args), ")"]


def _model_call(spec: dict[str, Any]) -> list[str]:
    m = spec["model"]
    ck = m["config_kwargs"]
    headline = {"freq_max_position_embeddings": "MAX_LENGTH", "mask_max_position_embeddings": "MAX_LENGTH"}
    o = spec["orpo"]
    hoisted: list[str] = []  # values too long for their line, named first
    lines = ["    model = ed.AutoEasyDeLModelForCausalLM.from_pretrained(", "        MODEL_ID,"]
    for key, value in m.items():
        if key == "pretrained_model_name_or_path":
            continue
        if key == "config_kwargs":
            lines.append("        config_kwargs=ed.EasyDeLBaseConfigDict(")
            for k, v in ck.items():
                ref = headline.get(k)
                code = ref if ref and o["max_length"] == v else _py(v)
                if k == "gradient_checkpointing":
                    lines.append("            # A checkpointing policy trades compute for memory (try one if OOM).")
                if len(f"            {k}={code},") > MAX_LINE:
                    hoisted.append(f"    {k} = {code}")
                    code = k
                lines.append(f"            {k}={code},")
            lines.append("        ),")
        elif key == "partition_axis":
            args = ", ".join(f"{k}={_py(v)}" for k, v in value.items())
            lines.append(f"        partition_axis=ed.PartitionAxis({args}),")
        else:
            lines.append(f"        {key}={_py(value)},")
    lines.append("    )")
    return hoisted + lines


def _dataset_lines(spec: dict[str, Any]) -> list[str]:
    d = spec["dataset"]
    lines = []

    def load(var: str, split_const: str) -> None:
        if d["data_files"]:
            lines.append(f"    {var} = load_dataset(")
            lines.append(f"        DATA_FORMAT, data_files={{{split_const}: DATA_FILES[{split_const}]}}, "
                         f"split={split_const}")
            lines.append("    )")
        else:
            lines.append(f"    {var} = load_dataset(DATASET_ID, split={split_const})")
        if d["max_examples"]:
            lines.append(f"    {var} = {var}.select(range(min(MAX_EXAMPLES, len({var}))))")

    load("train_dataset", "TRAIN_SPLIT")
    if d["eval_split"]:
        load("eval_dataset", "EVAL_SPLIT")
    elif d.get("eval_fraction"):
        lines.append("    # Hold out part of the training split for evaluation (dataset.eval_fraction).")
        lines.append(f"    held_out = train_dataset.train_test_split(test_size={d['eval_fraction']!r}, "
                     f"seed={spec['orpo']['shuffle_seed_train']!r})")
        lines.append('    train_dataset, eval_dataset = held_out["train"], held_out["test"]')
    else:
        lines.append("    eval_dataset = None")
    return lines


def _orpo_call(spec: dict[str, Any]) -> list[str]:
    lines = ["    arguments = ed.ORPOConfig("]
    for key, value in spec["orpo"].items():
        if key in HEADLINE_ARGS:
            code = key.upper()
        elif key == "save_directory":
            code = "SAVE_DIRECTORY"
        elif key == "loss_config":
            code = "ed.LossConfig(" + ", ".join(f"{k}={_py(v)}" for k, v in value.items()) + ")"
        else:
            code = _py(value)
        comment = f"  # {ORPO_COMMENTS[key]}" if key in ORPO_COMMENTS else ""
        lines.append(f"        {key}={code},{comment}")
    lines.append("    )")
    return lines


WANDB_PROJECT_LINES = '''
    # EasyDeL names the W&B project itself; wrap its wandb.init call to use ours.
    make_wandb_run = arguments.get_wandb_init

    def get_wandb_init():
        import wandb

        real_init = wandb.init
        wandb.init = lambda **kwargs: real_init(**{**kwargs, "project": WANDB_PROJECT})
        try:
            return make_wandb_run()
        finally:
            wandb.init = real_init

    object.__setattr__(arguments, "get_wandb_init", get_wandb_init)
'''


def _uses_torch(spec: dict[str, Any]) -> bool:
    return any(isinstance(v, str) and v.startswith("torch.") for v in spec["model"].values())


def _main(spec: dict[str, Any], stop_on_nan: bool = False) -> str:
    tok = "TOKENIZER_ID" if spec["tokenizer"] != spec["model"]["pretrained_model_name_or_path"] else "MODEL_ID"
    lines = [
        "@execute(accelerator)",
        "@ray.remote",
        "def main(hf_token=None, wandb_api_key=None):",
        '    """Train on the accelerator host(s); returns the last checkpoint\'s path."""',
        "    # Secrets come as arguments: a runtime env may show up in Ray's logs and dashboard.",
        "    if hf_token:",
        '        os.environ["HF_TOKEN"] = hf_token',
        "    if wandb_api_key:",
        '        os.environ["WANDB_API_KEY"] = wandb_api_key',
        "",
        "    # Imported here: these load on the training hosts, not in the launcher.",
        "    import easydel as ed",
        "    import jax",
        *(["    import torch"] if _uses_torch(spec) else []),
        "    from datasets import load_dataset",
        "    from jax import numpy as jnp",
        "    from transformers import AutoTokenizer",
        "",
        f"    tokenizer = AutoTokenizer.from_pretrained({tok})",
        "    if tokenizer.pad_token_id is None:",
        "        tokenizer.pad_token_id = tokenizer.eos_token_id",
        "",
    ]
    lines += _model_call(spec)
    lines.append("")
    lines += _dataset_lines(spec)
    lines.append("")
    lines += _orpo_call(spec)
    if spec["wandb_project"]:
        lines += WANDB_PROJECT_LINES.rstrip("\n").split("\n")
    lines.append("")
    if stop_on_nan:
        lines += ["    # The preset's orpo.stop_on_nan (stop and save on a NaN/Inf loss) is orpo-tui's own;",
                  "    # this script trains on through such steps."]
    lines += [
        "    trainer = ed.ORPOTrainer(",
        "        arguments=arguments,",
        "        model=model,",
        "        processing_class=tokenizer,",
        "        train_dataset=train_dataset,",
        "        eval_dataset=eval_dataset,",
        "    )",
        "    output = trainer.train()",
        "    return str(output.checkpoint_path)",
    ]
    return "\n".join(lines) + "\n"


def _entry(preset: Preset) -> str:
    s = preset.secrets
    return "\n".join([
        'if __name__ == "__main__":',
        "    status = main(",
        f"        hf_token=os.environ.get({_str(s.hf_token_env)}),",
        f"        wandb_api_key=os.environ.get({_str(s.wandb_api_key_env)}),",
        "    )",
        "    # eformer returns the outcome instead of raising: a failed run must not exit 0.",
        "    if not isinstance(status, JobSucceeded):",
        '        sys.exit(f"training failed: {getattr(status, \'error\', status)!r}")',
        '    print(f"training finished; last checkpoint: {status.result[0]}")',
    ]) + "\n"
