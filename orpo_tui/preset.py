"""Typed model of one ORPO run, its TOML form, and the checks that guard it.

The same `validate` serves the console's forms (as you type), `--no-ui` and
`--dry-run`, so every surface refuses the same things with the same words.
No easydel, jax or textual here: this module must import in milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from orpo_tui import accelerators

ATTENTION_MECHANISMS = (
    "auto", "vanilla", "flash_attn2", "ring", "blocksparse", "cudnn", "blockwise", "sdpa",
    "cuda_flash_attn2",
)
GRADIENT_CHECKPOINTING = (
    "none", "everything_saveable", "nothing_saveable", "checkpoint_dots",
    "checkpoint_dots_with_no_batch_dims", "dots_saveable", "dots_with_no_batch_dims_saveable",
    "mlp_notsaveable", "attn_notsaveable", "mlp_attn_notsaveable",
)
DTYPES = ("bfloat16", "float16", "float32")
PRECISIONS = ("default", "high", "highest")
OPTIMIZERS = ("adamw", "adafactor", "lion", "rmsprop", "muon", "mars", "skew", "quad")
SCHEDULERS = ("cosine", "linear", "none")
PARTITION_AXES = ("tp", "fsdp", "dp", "sp")
SHARDING_AXES = ("dp", "fsdp", "ep", "tp", "sp")
DATA_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Env var names are by convention upper-case; a lower/mixed-case blob this long is a key.
LOOKS_LIKE_TOKEN = re.compile(r"^(hf_[A-Za-z0-9]{8,}|[0-9a-f]{32,}|[A-Za-z0-9_\-]{36,})$")


def spec(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None,
         choices: tuple[str, ...] | None = None, ge: float | None = None,
         gt: float | None = None, le: float | None = None, label: str = "") -> Any:
    """A dataclass field that carries its form help, choices and allowed range."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "label": label}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelSection:
    id: str = spec("", "Hub id (org/name) or local path (./, ../, / or ~) of the causal LM")
    tokenizer: str = spec("", "Tokenizer id or path; empty means the model's own")
    dtype: str = spec("bfloat16", "Compute dtype", choices=DTYPES)
    param_dtype: str = spec("bfloat16", "Parameter storage dtype", choices=DTYPES)
    precision: str = spec("default", "Matmul precision (jax.lax.Precision)", choices=PRECISIONS)
    sharding_axis_dims: list[int] = spec(
        help="Mesh sizes for (dp, fsdp, ep, tp, sp); one -1 takes the remaining chips",
        factory=lambda: [1, -1, 1, 1, 1])
    kv_head_axis: str = spec("tp", "Mesh axis the KV heads are sharded on", choices=PARTITION_AXES)
    attn_mechanism: str = spec("auto", "Attention kernel", choices=ATTENTION_MECHANISMS)
    gradient_checkpointing: str = spec("none", "Rematerialisation policy (try one if you go OOM)",
                                       choices=GRADIENT_CHECKPOINTING)
    auto_shard_model: bool = spec(True, "Let EasyDeL shard the parameters over the mesh")
    # EasyDeL reads a torch checkpoint in float16 unless told otherwise (measured on 0.3.0):
    # bf16 weights outside float16's range would overflow, float32 ones lose precision.
    load_dtype: str = spec("float16", "Dtype the HF checkpoint is read in before conversion "
                           "(EasyDeL's default float16; use the checkpoint's own)", choices=DTYPES)


@dataclass
class DatasetSection:
    id: str = spec("", "Hub dataset id, or a local dataset folder")
    data_files: dict[str, list[str]] = spec(
        help="Local files per split, e.g. train = [\"data/train.jsonl\"] (json, jsonl, parquet, csv)",
        factory=dict)
    split: str = spec("train", "Split to train on")
    eval_split: str = spec("", "Split to evaluate on; empty for none")
    eval_fraction: float = spec(0.0, "Without an eval split: hold out this fraction of the training "
                                     "split for evaluation; 0 for none", ge=0.0, le=0.5)
    max_examples: int = spec(0, "Use only the first N training pairs; 0 for all", ge=0)


@dataclass
class AcceleratorSection:
    kind: str = spec("tpu", "Where the trainer runs", choices=("tpu", "gpu", "cpu"))
    type: str = spec("v4-8", "TPU slice (e.g. v4-64, v5litepod-16), GPU type (e.g. a100), or cpu")
    count: int = spec(1, "GPUs (gpu) or CPU cores (cpu) per worker", ge=1)
    ray_address: str = spec("", "Ray cluster to join; empty starts or reuses a local head")
    env: dict[str, str] = spec(help="Extra non-secret environment variables for the workers",
                               factory=dict)
    pip: list[str] = spec(help="Extra pip packages for the workers' runtime env", factory=list)


@dataclass
class OrpoSection:
    num_train_epochs: int = spec(1, "Passes over the training set", ge=1)
    total_batch_size: int = spec(32, "Preference pairs per optimizer step (all chips)", ge=1)
    gradient_accumulation_steps: int = spec(1, "Micro-batches per optimizer step", ge=1)
    max_prompt_length: int = spec(2048, "Tokens kept of the prompt", ge=1)
    max_completion_length: int = spec(2048, "Tokens kept of each completion", ge=1)
    max_length: int = spec(4096, "Tokens of prompt plus completion", ge=2)
    learning_rate: float = spec(8e-6, "Peak learning rate", gt=0.0, le=1.0)
    learning_rate_end: float = spec(1e-6, "Learning rate at the end of the schedule", ge=0.0, le=1.0)
    beta: float = spec(0.1, "Weight of the odds-ratio term against the NLL term", gt=0.0, le=100.0)
    optimizer: str = spec("adamw", "Optimizer", choices=OPTIMIZERS)
    scheduler: str = spec("cosine", "Learning-rate schedule", choices=SCHEDULERS)
    warmup_steps: int = spec(0, "Linear warm-up steps", ge=0)
    weight_decay: float = spec(0.01, "Decoupled weight decay", ge=0.0, le=1.0)
    clip_grad: float = spec(1.0, "Clip the global gradient norm to this; 0 for no clipping", ge=0.0)
    z_loss: float = spec(0.0, "Z-loss coefficient on the logits", ge=0.0)
    max_training_steps: int = spec(0, "Stop after N optimizer steps; 0 for whole epochs", ge=0)
    do_eval: bool = spec(True, "Evaluate (on the eval split when set)")
    eval_steps: int = spec(0, "Evaluate every N steps; 0 for only at the end", ge=0)
    shuffle_seed: int = spec(64871, "Seed of the training-set shuffle", ge=0)
    stop_on_nan: bool = spec(False, "Stop the run (saving a checkpoint) when a loss part is NaN or Inf; "
                                    "it ends `stopped` and its event log says why")


@dataclass
class OutputSection:
    save_directory: str = spec("checkpoints",
                               "Checkpoint folder: gs://bucket/path, absolute, or relative to the run folder")
    save_steps: int = spec(1000, "Save a checkpoint every N steps; 0 for none", ge=0)
    save_total_limit: int = spec(0, "Keep the N newest checkpoints; 0 keeps all", ge=0)
    save_optimizer_state: bool = spec(False, "Include optimizer state (needed for an exact resume)")
    do_last_save: bool = spec(True, "Save a checkpoint when training ends")


@dataclass
class LoggingSection:
    use_wandb: bool = spec(False, "Report to Weights & Biases")
    wandb_entity: str = spec("", "W&B entity (user or team); empty for your default")
    wandb_project: str = spec("", "W&B project; empty for EasyDeL's (EasyDeL-ORPO)")
    wandb_name: str = spec("", "W&B run name; empty for a generated one")
    report_steps: int = spec(10, "Send metrics to W&B every N steps", ge=1)
    log_steps: int = spec(1, "Trainer progress line every N steps", ge=1)
    track_memory: bool = spec(False, "Let EasyDeL sample device memory")


@dataclass
class SecretsSection:
    hf_token_env: str = spec("HF_TOKEN_FOR_EASYDEL", "Environment variable holding the HF token")
    wandb_api_key_env: str = spec("WANDB_API_KEY_FOR_EASYDEL",
                                  "Environment variable holding the W&B API key")


@dataclass
class Preset:
    name: str = spec("untitled", "Short name of this preset")
    description: str = spec("", "One line about this run")
    model: ModelSection = field(default_factory=ModelSection)
    dataset: DatasetSection = field(default_factory=DatasetSection)
    accelerator: AcceleratorSection = field(default_factory=AcceleratorSection)
    orpo: OrpoSection = field(default_factory=OrpoSection)
    output: OutputSection = field(default_factory=OutputSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    secrets: SecretsSection = field(default_factory=SecretsSection)
    #: Folder the preset was read from; relative local paths resolve against it.
    base_dir: Path | None = field(default=None, compare=False, repr=False, metadata={"internal": True})

    def resolve(self, path: str) -> Path:
        """A local path from this preset, made absolute (relative to the preset's folder)."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        return ((self.base_dir or Path.cwd()) / p).resolve()

    def copy(self) -> Preset:
        return from_dict(to_dict(self), base_dir=self.base_dir)

    def absolutized(self) -> Preset:
        """A copy whose local paths are absolute, so it loads from any folder (e.g. a run's)."""
        out = self.copy()
        for key in ("model.id", "model.tokenizer", "dataset.id"):
            ref = get(out, key)
            if ref and is_local_path(ref):
                set_value(out, key, str(self.resolve(ref)))
        out.dataset.data_files = {split: [str(self.resolve(f)) for f in files]
                                  for split, files in out.dataset.data_files.items()}
        return out


SECTIONS: dict[str, type] = {
    "model": ModelSection, "dataset": DatasetSection, "accelerator": AcceleratorSection,
    "orpo": OrpoSection, "output": OutputSection, "logging": LoggingSection,
    "secrets": SecretsSection,
}


class PresetError(ValueError):
    """A preset that cannot be used; `str()` is the one line shown to the user."""

    def __init__(self, message: str, *, file: str | os.PathLike | None = None, key: str = ""):
        self.file = str(file) if file else ""
        self.key = key
        self.reason = message
        where = ": ".join(x for x in (self.file, key) if x)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a preset: the dotted key and why."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass(frozen=True)
class FieldSpec:
    """What a form needs to know about one preset key."""

    key: str
    type: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None
    ge: float | None
    gt: float | None
    le: float | None

    @property
    def range_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        lo = f"> {self.gt:g}" if self.gt is not None else (f">= {self.ge:g}" if self.ge is not None else "")
        hi = f"<= {self.le:g}" if self.le is not None else ""
        return " and ".join(x for x in (lo, hi) if x)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_specs() -> list[FieldSpec]:
    """Every editable key of a preset, in file order."""
    out: list[FieldSpec] = []
    hints = _hints(Preset)
    for f in dataclasses.fields(Preset):
        if f.metadata.get("internal"):
            continue
        if f.name in SECTIONS:
            sec = SECTIONS[f.name]
            sec_hints = _hints(sec)
            for sf in dataclasses.fields(sec):
                out.append(_spec_of(f"{f.name}.{sf.name}", sf, sec_hints[sf.name]))
        else:
            out.append(_spec_of(f.name, f, hints[f.name]))
    return out


def _spec_of(key: str, f: dataclasses.Field, tp: Any) -> FieldSpec:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    m = f.metadata
    return FieldSpec(key, tp, default, m.get("help", ""), m.get("choices"), m.get("ge"), m.get("gt"), m.get("le"))


FIELD_SPECS: dict[str, FieldSpec] = {s.key: s for s in field_specs()}


# ---------------------------------------------------------------- type checks

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a table of {_type_name(typing.get_args(tp)[1])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Return value as tp, or raise TypeError naming what was expected."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str) and item is str:
            value = [value]
        if not isinstance(value, list):
            raise TypeError(f"expected {_type_name(tp)}, got {value!r}")
        return [_coerce(v, item) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise TypeError(f"expected {_type_name(tp)}, got {value!r}")
        return {str(k): _coerce(v, item) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise TypeError(f"expected {_type_name(tp)}, got {value!r}")


def parse_field(key: str, text: str) -> Any:
    """Parse what a user typed into a form field for `key`; raises ValueError with the reason."""
    fs = FIELD_SPECS[key]
    text = text.strip()
    tp = fs.type
    origin = typing.get_origin(tp)
    try:
        if tp is bool:
            low = text.lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if tp is int:
            return int(text.replace("_", ""))
        if tp is float:
            return float(text)
        if tp is str:
            return text
        if origin is list:
            item = typing.get_args(tp)[0]
            parts = [p.strip() for p in text.strip("[]()").split(",") if p.strip()]
            return [int(p) if item is int else p.strip("\"'") for p in parts]
        if origin is dict:
            return _coerce(tomllib.loads(f"x = {text or '{}'}")["x"], tp)
    except (ValueError, TypeError, tomllib.TOMLDecodeError):
        pass
    raise ValueError(f"expected {_type_name(tp)}, got {text!r}")


# ---------------------------------------------------------------- dict / TOML

def from_dict(data: dict[str, Any], *, file: str | os.PathLike | None = None,
              base_dir: Path | None = None) -> Preset:
    """Build a Preset from parsed TOML, rejecting unknown keys and wrong types."""
    preset = Preset(base_dir=base_dir)
    hints = _hints(Preset)
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise PresetError(f"expected a [{key}] table", file=file, key=key)
            section = getattr(preset, key)
            sec_hints = _hints(SECTIONS[key])
            for sub, sub_value in value.items():
                if sub not in sec_hints:
                    raise PresetError(f"unknown key (allowed: {', '.join(sec_hints)})",
                                      file=file, key=f"{key}.{sub}")
                try:
                    setattr(section, sub, _coerce(sub_value, sec_hints[sub]))
                except TypeError as e:
                    raise PresetError(str(e), file=file, key=f"{key}.{sub}") from None
        elif key in hints and key != "base_dir" and key not in SECTIONS:
            try:
                setattr(preset, key, _coerce(value, hints[key]))
            except TypeError as e:
                raise PresetError(str(e), file=file, key=key) from None
        else:
            allowed = ["name", "description", *SECTIONS]
            raise PresetError(f"unknown key (allowed: {', '.join(allowed)})", file=file, key=key)
    return preset


def to_dict(preset: Preset) -> dict[str, Any]:
    """The preset as plain TOML-ready data (every key, in file order)."""
    out: dict[str, Any] = {"name": preset.name, "description": preset.description}
    for name in SECTIONS:
        out[name] = dataclasses.asdict(getattr(preset, name))
    return out


def loads(text: str, *, file: str | os.PathLike | None = None, base_dir: Path | None = None,
          check: bool = True) -> Preset:
    """Parse TOML text into a Preset; raises PresetError with one line.

    `check=False` still refuses bad TOML, unknown keys and wrong types, but leaves
    range and cross-field problems for a form to mark (see `validate`).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"TOML syntax error: {e}", file=file) from None
    preset = from_dict(data, file=file, base_dir=base_dir)
    if not check:
        return preset
    problems = validate(preset)
    if problems:
        p = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PresetError(p.message + more, file=file, key=p.key)
    return preset


def load(path: str | os.PathLike, *, check: bool = True) -> Preset:
    """Read (and by default check) a preset file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError("no such preset file", file=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PresetError(f"cannot read: {e}", file=path) from None
    return loads(text, file=path, base_dir=path.resolve().parent, check=check)


def rebased(preset: Preset, new_dir: Path) -> Preset:
    """A copy whose relative local paths mean the same files when read from `new_dir`."""
    out = preset.copy()

    def move(ref: str) -> str:
        if not ref or not is_local_path(ref) or Path(ref).expanduser().is_absolute():
            return ref
        rel = os.path.relpath(preset.resolve(ref), new_dir)
        return rel if rel.startswith("..") else f"./{rel}"

    for key in ("model.id", "model.tokenizer", "dataset.id"):
        set_value(out, key, move(get(out, key)))
    out.dataset.data_files = {k: [move(f) if is_local_path(f) else move(f"./{f}") for f in v]
                              for k, v in out.dataset.data_files.items()}
    out.base_dir = new_dir
    return out


def dumps(preset: Preset) -> str:
    return tomli_w.dumps(to_dict(preset))


def save(preset: Preset, path: str | os.PathLike) -> Path:
    """Write the preset as TOML (atomically); secrets are only ever env-var names.

    Relative local paths are rewritten relative to the new file's folder, so a
    "save as" elsewhere still points at the same model and data.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.resolve().parent
    if preset.base_dir is not None and preset.base_dir.resolve() != target:
        preset = rebased(preset, target)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(preset), encoding="utf-8")
    tmp.replace(path)
    return path


def diff(a: Preset, b: Preset) -> list[tuple[str, Any, Any]]:
    """Keys whose values differ between two presets: (key, a's value, b's value)."""
    fa, fb = flatten(a), flatten(b)
    return [(k, fa[k], fb[k]) for k in fa if fa[k] != fb[k]]


def flatten(preset: Preset) -> dict[str, Any]:
    """{"orpo.beta": 0.1, ...} for every key."""
    out: dict[str, Any] = {}
    for key, value in to_dict(preset).items():
        if isinstance(value, dict) and key in SECTIONS:
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def get(preset: Preset, key: str) -> Any:
    obj: Any = preset
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def set_value(preset: Preset, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    obj: Any = preset
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, last, value)


# ---------------------------------------------------------------- validation

def check_field(key: str, value: Any) -> str | None:
    """The reason `value` is not allowed for `key` on its own, or None."""
    fs = FIELD_SPECS[key]
    if fs.choices is not None and value not in fs.choices:
        return f"{value!r} is not allowed: {fs.range_text}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if fs.gt is not None and not value > fs.gt:
            return f"{value!r} is out of range: must be {fs.range_text}"
        if fs.ge is not None and not value >= fs.ge:
            return f"{value!r} is out of range: must be {fs.range_text}"
        if fs.le is not None and not value <= fs.le:
            return f"{value!r} is out of range: must be {fs.range_text}"
    return None


def is_local_path(ref: str) -> bool:
    return ref.startswith(("./", "../", "/", "~")) or ref in (".", "..")


def validate(preset: Preset, *, check_files: bool = True) -> list[Problem]:
    """Every problem with the preset, field checks first, then cross-field ones."""
    problems: list[Problem] = []
    flat = flatten(preset)
    for key, value in flat.items():
        reason = check_field(key, value)
        if reason:
            problems.append(Problem(key, reason))
    problems += _check_model(preset, check_files)
    problems += _check_dataset(preset, check_files)
    problems += _check_accelerator(preset)
    problems += _check_orpo(preset)
    problems += _check_output(preset)
    problems += _check_secrets(preset)
    return problems


def _check_model(p: Preset, check_files: bool) -> list[Problem]:
    out = []
    if not p.model.id.strip():
        out.append(Problem("model.id", "is empty: give a hub id such as Qwen/Qwen3-14B or a local path"))
    elif check_files and is_local_path(p.model.id) and not p.resolve(p.model.id).is_dir():
        out.append(Problem("model.id", f"local model folder {p.resolve(p.model.id)} does not exist"))
    if p.model.tokenizer and check_files and is_local_path(p.model.tokenizer) \
            and not p.resolve(p.model.tokenizer).is_dir():
        out.append(Problem("model.tokenizer", f"local tokenizer folder {p.resolve(p.model.tokenizer)} does not exist"))
    dims = p.model.sharding_axis_dims
    if len(dims) != 5:
        out.append(Problem("model.sharding_axis_dims",
                           f"needs 5 sizes ({', '.join(SHARDING_AXES)}), got {len(dims)}"))
    elif any(d == 0 or d < -1 for d in dims) or dims.count(-1) > 1:
        out.append(Problem("model.sharding_axis_dims", f"{dims}: sizes must be >= 1, with at most one -1"))
    return out


def _check_dataset(p: Preset, check_files: bool) -> list[Problem]:
    d = p.dataset
    out = []
    if bool(d.id.strip()) == bool(d.data_files):
        out.append(Problem("dataset.id", "set exactly one of dataset.id (hub id or folder) and dataset.data_files"))
        return out
    if d.data_files:
        if d.split not in d.data_files:
            out.append(Problem("dataset.split", f"{d.split!r} has no files in dataset.data_files "
                                                f"(splits: {', '.join(d.data_files) or 'none'})"))
        if d.eval_split and d.eval_split not in d.data_files:
            out.append(Problem("dataset.eval_split", f"{d.eval_split!r} has no files in dataset.data_files"))
        formats = set()
        for split, files in d.data_files.items():
            key = f"dataset.data_files.{split}"
            if not files:
                out.append(Problem(key, "lists no files"))
            for f in files:
                ext = Path(f).suffix.lower()
                if ext not in DATA_FORMATS:
                    out.append(Problem(key, f"{f}: unsupported file type (use {', '.join(DATA_FORMATS)})"))
                    continue
                formats.add(DATA_FORMATS[ext])
                if check_files:
                    path = p.resolve(f)
                    if not path.is_file():
                        out.append(Problem(key, f"file {path} does not exist"))
                    else:
                        missing = _missing_columns(path)
                        if missing:
                            out.append(Problem(key, f"{path} has no {', '.join(missing)} column"
                                               f"{'s' if len(missing) > 1 else ''} (needs chosen and rejected)"))
        if len(formats) > 1:
            out.append(Problem("dataset.data_files", f"mixes file types ({', '.join(sorted(formats))})"))
    elif check_files and is_local_path(d.id) and not p.resolve(d.id).exists():
        out.append(Problem("dataset.id", f"local dataset {p.resolve(d.id)} does not exist"))
    if d.eval_split and d.eval_split == d.split:
        out.append(Problem("dataset.eval_split", "is the training split: evaluate on held-out data"))
    if d.eval_split and d.eval_fraction:
        out.append(Problem("dataset.eval_fraction", f"is set but so is dataset.eval_split ({d.eval_split!r}): "
                                                    f"evaluate on one of them"))
    return out


def _missing_columns(path: Path) -> list[str]:
    """Preference columns absent from a local file's first record (cheap: one row)."""
    ext = path.suffix.lower()
    try:
        if ext in (".jsonl", ".json"):
            with path.open(encoding="utf-8") as fh:
                head = fh.read(1).lstrip()
                fh.seek(0)
                if head == "[":
                    first = (json.load(fh) or [{}])[0]
                else:
                    line = next((ln for ln in fh if ln.strip()), "{}")
                    first = json.loads(line)
            cols = set(first) if isinstance(first, dict) else set()
        elif ext == ".csv":
            with path.open(encoding="utf-8") as fh:
                cols = {c.strip() for c in fh.readline().split(",")}
        else:
            import pyarrow.parquet as pq
            cols = set(pq.read_schema(path).names)
    except (OSError, ValueError, StopIteration, IndexError):
        return ["readable"]
    return [c for c in ("chosen", "rejected") if c not in cols]


def _check_accelerator(p: Preset) -> list[Problem]:
    a = p.accelerator
    out = []
    if a.kind == "tpu":
        try:
            sl = accelerators.tpu_slice(a.type)
        except KeyError as e:
            out.append(Problem("accelerator.type", str(e.args[0])))
            return out
        devices = sl.chips
    elif a.kind == "gpu":
        devices = a.count
        if not a.type.strip():
            out.append(Problem("accelerator.type", "name the GPU type, e.g. a100 or h100"))
    else:
        devices = 1
    for k in a.env:
        if not ENV_NAME.match(k):
            out.append(Problem(f"accelerator.env.{k}", "is not a valid environment variable name"))
        if k in (p.secrets.hf_token_env, p.secrets.wandb_api_key_env, "HF_TOKEN", "WANDB_API_KEY") \
                or LOOKS_LIKE_TOKEN.match(a.env[k]):
            out.append(Problem(f"accelerator.env.{k}", "secrets go in [secrets] as variable names, never values"))
    dims = p.model.sharding_axis_dims
    # devices < 1 (a GPU count of 0) is already reported by the field check; skip the maths.
    if devices >= 1 and len(dims) == 5 and dims.count(-1) <= 1 and all(d == -1 or d >= 1 for d in dims):
        fixed = 1
        for d in dims:
            fixed *= d if d > 0 else 1
        if devices % fixed:
            out.append(Problem("model.sharding_axis_dims",
                               f"{dims} needs a multiple of {fixed} devices; {a.type} has {devices}"))
        else:
            resolved = [d if d > 0 else devices // fixed for d in dims]
            data_parallel = resolved[0] * resolved[1]
            if -1 not in dims and fixed != devices:
                out.append(Problem("model.sharding_axis_dims",
                                   f"{dims} uses {fixed} devices; {a.type} has {devices}"))
            micro = p.orpo.total_batch_size
            if micro % data_parallel:
                out.append(Problem("orpo.total_batch_size",
                                   f"{micro} is not divisible by the {data_parallel} data-parallel chips "
                                   f"of {a.type} (dp x fsdp)"))
    return out


def _check_orpo(p: Preset) -> list[Problem]:
    o = p.orpo
    out = []
    if o.max_prompt_length >= o.max_length:
        out.append(Problem("orpo.max_prompt_length",
                           f"{o.max_prompt_length} must be below orpo.max_length ({o.max_length})"))
    elif o.max_prompt_length + o.max_completion_length > o.max_length:
        out.append(Problem("orpo.max_completion_length",
                           f"prompt {o.max_prompt_length} + completion {o.max_completion_length} "
                           f"exceeds orpo.max_length ({o.max_length})"))
    if o.learning_rate_end > o.learning_rate:
        out.append(Problem("orpo.learning_rate_end",
                           f"{o.learning_rate_end:g} is above orpo.learning_rate ({o.learning_rate:g})"))
    if o.gradient_accumulation_steps >= 1 and o.total_batch_size % o.gradient_accumulation_steps:
        out.append(Problem("orpo.gradient_accumulation_steps",
                           f"{o.gradient_accumulation_steps} does not divide orpo.total_batch_size "
                           f"({o.total_batch_size})"))
    if o.eval_steps and not o.do_eval:
        out.append(Problem("orpo.eval_steps", "is set but orpo.do_eval is false"))
    return out


def _check_output(p: Preset) -> list[Problem]:
    s = p.output.save_directory.strip()
    if not s:
        return [Problem("output.save_directory", "is empty")]
    if "://" in s and not s.startswith(("gs://", "s3://", "file://")):
        return [Problem("output.save_directory", f"{s}: only gs://, s3:// or local paths are supported")]
    return []


def _check_secrets(p: Preset) -> list[Problem]:
    out = []
    for key in ("hf_token_env", "wandb_api_key_env"):
        name = getattr(p.secrets, key)
        if LOOKS_LIKE_TOKEN.match(name) and not name.isupper():
            out.append(Problem(f"secrets.{key}", "looks like a secret value: name the environment "
                                                 "variable that holds it instead"))
        elif not ENV_NAME.match(name):
            out.append(Problem(f"secrets.{key}", f"{name!r} is not a valid environment variable name"))
    return out


def secret_status(preset: Preset, environ: typing.Mapping[str, str] | None = None) -> dict[str, bool]:
    """Which named secret variables are set (never their values)."""
    env = os.environ if environ is None else environ
    return {preset.secrets.hf_token_env: bool(env.get(preset.secrets.hf_token_env)),
            preset.secrets.wandb_api_key_env: bool(env.get(preset.secrets.wandb_api_key_env))}
