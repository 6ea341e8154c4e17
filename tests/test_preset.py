"""The typed preset: TOML round trips, form parsing/checking, diff, secrets, paths, TPU catalog.

No eformer, easydel or jax here: `accelerators.eformer_config` is covered elsewhere.
"""

from __future__ import annotations

import dataclasses
import tomllib
import shutil
from pathlib import Path

import pytest

from orpo_tui import accelerators
from orpo_tui import preset as P
from orpo_tui.job import resolve

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
SHIPPED = sorted((REPO / "presets").glob("*.toml"))


def _mirror_repo_layout(tmp_path: Path) -> Path:
    """tmp/presets/ next to tmp/assets -> repo assets, so `../assets/...` still resolves."""
    (tmp_path / "presets").mkdir()
    (tmp_path / "assets").symlink_to(ASSETS, target_is_directory=True)
    return tmp_path / "presets"


# ---------------------------------------------------------------- round trips

def test_both_flagship_and_tiny_presets_are_shipped():
    names = {p.name for p in SHIPPED}
    assert {"qwen3-14b-v4-64.toml", "tiny-cpu.toml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_preset_load_save_load_is_lossless(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths must not depend on the cwd
    mirror = _mirror_repo_layout(tmp_path)
    first = P.load(shutil.copy(path, mirror / path.name))
    out = P.save(first, mirror / f"saved-{path.name}")
    second = P.load(out)
    assert second == first
    assert P.flatten(second) == P.flatten(first)
    assert P.diff(first, second) == []
    # A second save writes the very same text (stable key order and formatting).
    assert P.dumps(second) == out.read_text(encoding="utf-8")
    # The file's own values survived (not just "both equal the defaults").
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert P.get(second, f"{section}.{key}") == value, f"{section}.{key}"
        else:
            assert P.get(second, section) == values, section


def _every_field_changed() -> dict:
    tiny = str(ASSETS / "tiny-qwen3")
    return {
        "name": "everything",
        "description": "every key differs from its default",
        "model": {
            "id": tiny, "tokenizer": tiny, "dtype": "float32", "param_dtype": "float16",
            "precision": "highest", "sharding_axis_dims": [1, 1, 1, -1, 1], "kv_head_axis": "fsdp",
            "attn_mechanism": "vanilla", "gradient_checkpointing": "nothing_saveable",
            "auto_shard_model": False, "load_dtype": "bfloat16",
        },
        "dataset": {
            "id": "",
            "data_files": {"tr": [str(ASSETS / "preferences" / "train.jsonl")],
                           "ev": [str(ASSETS / "preferences" / "test.jsonl")]},
            "split": "tr", "eval_split": "ev", "max_examples": 10,
        },
        "accelerator": {
            "kind": "gpu", "type": "a100", "count": 2, "ray_address": "ray://head:10001",
            "env": {"FOO": "bar", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.9"}, "pip": ["einops", "rich==13"],
        },
        "orpo": {
            "num_train_epochs": 2, "total_batch_size": 16, "gradient_accumulation_steps": 2,
            "max_prompt_length": 100, "max_completion_length": 150, "max_length": 256,
            "learning_rate": 2e-5, "learning_rate_end": 2e-6, "beta": 0.25, "optimizer": "lion",
            "scheduler": "linear", "warmup_steps": 5, "weight_decay": 0.05, "clip_grad": 0.5,
            "z_loss": 1e-4, "max_training_steps": 100, "do_eval": True, "eval_steps": 50,
            "shuffle_seed": 7, "stop_on_nan": True,
        },
        "output": {
            "save_directory": "gs://bucket/orpo", "save_steps": 50, "save_total_limit": 3,
            "save_optimizer_state": True, "do_last_save": False,
        },
        "logging": {
            "use_wandb": True, "wandb_entity": "team", "wandb_project": "proj", "wandb_name": "run-1",
            "report_steps": 5, "log_steps": 2, "track_memory": True,
        },
        "secrets": {"hf_token_env": "MY_HF_TOKEN", "wandb_api_key_env": "MY_WANDB_KEY"},
    }


# A valid preset cannot change these from their defaults: dataset.id is exclusive with
# dataset.data_files, do_eval = false forbids eval_steps, and dataset.eval_fraction is
# exclusive with dataset.eval_split.
VALID_BUT_DEFAULT = {"dataset.id", "orpo.do_eval", "dataset.eval_fraction"}


def test_every_field_changed_preset_covers_every_key():
    p = P.from_dict(_every_field_changed())
    defaults = P.flatten(P.Preset())
    same = {k for k, v in P.flatten(p).items() if v == defaults[k]}
    assert same == VALID_BUT_DEFAULT, "a new preset key? change it in _every_field_changed()"
    assert set(P.flatten(p)) == set(P.FIELD_SPECS)


def test_every_field_changed_preset_survives_save_and_load(tmp_path):
    data = _every_field_changed()
    first = P.from_dict(data)
    assert P.validate(first) == []
    path = P.save(first, tmp_path / "sub" / "everything.toml")
    second = P.load(path)
    assert second == first
    assert P.flatten(second) == P.flatten(P.from_dict(data))
    assert P.load(P.save(second, tmp_path / "again.toml")) == first


def test_literally_every_field_changed_survives_the_toml_layer(tmp_path):
    """The keys a valid preset must leave at default also round-trip (parse layer, no checks)."""
    data = _every_field_changed()
    data["dataset"]["id"] = "org/some-dataset"
    data["orpo"]["do_eval"] = False
    data["dataset"]["eval_fraction"] = 0.1
    first = P.from_dict(data)
    defaults = P.flatten(P.Preset())
    assert all(v != defaults[k] for k, v in P.flatten(first).items())
    path = P.save(first, tmp_path / "all.toml")
    second = P.from_dict(tomllib.loads(path.read_text(encoding="utf-8")), file=path)
    assert second == first
    # ... and load() refuses it with one line naming the key, not a crash.
    with pytest.raises(P.PresetError) as e:
        P.load(path)
    assert str(e.value).startswith(f"{path}: dataset.id: ")
    assert "\n" not in str(e.value)


def test_save_writes_only_secret_names(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN_FOR_EASYDEL", "hf_zzSuperSecretValue123456")
    p = P.load(REPO / "presets" / "qwen3-14b-v4-64.toml")
    text = P.save(p, tmp_path / "x.toml").read_text(encoding="utf-8")
    assert "hf_zzSuperSecretValue123456" not in text
    assert 'hf_token_env = "HF_TOKEN_FOR_EASYDEL"' in text
    assert not (tmp_path / "x.toml.tmp").exists()


def test_copy_is_deep_and_equal():
    p = P.load(REPO / "presets" / "tiny-cpu.toml")
    q = p.copy()
    assert q == p and q.base_dir == p.base_dir
    q.dataset.data_files["train"].append("more.jsonl")
    q.model.sharding_axis_dims[0] = 2
    assert p.dataset.data_files["train"] == ["../assets/preferences/train.jsonl"]
    assert p.model.sharding_axis_dims == [1, -1, 1, 1, 1]


# ---------------------------------------------------------------- form fields

@pytest.mark.parametrize(("key", "text", "expected"), [
    ("orpo.total_batch_size", "32", 32),
    ("output.save_steps", "1_000", 1000),
    ("orpo.max_length", "  4096 ", 4096),
    ("orpo.learning_rate", "8e-6", 8e-6),
    ("orpo.beta", "0.1", 0.1),
    ("orpo.clip_grad", "1", 1.0),
    ("model.auto_shard_model", "true", True),
    ("model.auto_shard_model", "Yes", True),
    ("logging.use_wandb", "off", False),
    ("logging.use_wandb", "0", False),
    ("model.id", "  Qwen/Qwen3-14B  ", "Qwen/Qwen3-14B"),
    ("model.sharding_axis_dims", "1, -1, 1, 1, 1", [1, -1, 1, 1, 1]),
    ("model.sharding_axis_dims", "(1, -1, 1, 1, 1)", [1, -1, 1, 1, 1]),
    ("model.sharding_axis_dims", "[2,4,1,4,1]", [2, 4, 1, 4, 1]),
    ("accelerator.pip", "einops, 'rich==13'", ["einops", "rich==13"]),
    ("accelerator.pip", "", []),
    ("accelerator.env", '{HF_HOME = "/dev/shm/hf", EASYDEL_AUTO = "1"}',
     {"HF_HOME": "/dev/shm/hf", "EASYDEL_AUTO": "1"}),
    ("dataset.data_files", '{train = ["a.jsonl"], test = "b.jsonl"}',
     {"train": ["a.jsonl"], "test": ["b.jsonl"]}),
    ("dataset.data_files", "", {}),
])
def test_parse_field_accepts(key, text, expected):
    value = P.parse_field(key, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("key", "text", "names"), [
    ("orpo.total_batch_size", "thirty-two", "an integer"),
    ("orpo.total_batch_size", "3.5", "an integer"),
    ("orpo.beta", "abc", "a number"),
    ("orpo.beta", "", "a number"),
    ("model.auto_shard_model", "maybe", "true or false"),
    ("model.sharding_axis_dims", "1, x, 1", "a list of an integer"),
    ("accelerator.env", '{A = 1}', "a table of a string"),
    ("dataset.data_files", "train = [", "a table of a list"),
])
def test_parse_field_refuses_with_the_expected_type(key, text, names):
    with pytest.raises(ValueError) as e:
        P.parse_field(key, text)
    assert names in str(e.value)
    assert repr(text.strip()) in str(e.value)


@pytest.mark.parametrize(("key", "value"), [
    ("orpo.beta", 0.1), ("orpo.beta", 100.0), ("orpo.learning_rate", 1.0),
    ("orpo.learning_rate_end", 0.0), ("orpo.optimizer", "adamw"), ("orpo.scheduler", "none"),
    ("model.dtype", "float16"), ("accelerator.kind", "cpu"), ("dataset.max_examples", 0),
    ("orpo.total_batch_size", 1), ("model.auto_shard_model", False), ("model.id", "anything"),
])
def test_check_field_accepts(key, value):
    assert P.check_field(key, value) is None


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("orpo.beta", 0.0, "must be > 0"),
    ("orpo.beta", -0.5, "must be > 0"),
    ("orpo.beta", 101.0, "<= 100"),
    ("orpo.learning_rate", 0.0, "> 0"),
    ("orpo.learning_rate", 2.0, "<= 1"),
    ("orpo.total_batch_size", 0, ">= 1"),
    ("dataset.max_examples", -1, ">= 0"),
    ("orpo.optimizer", "sgd", "one of adamw, adafactor"),
    ("model.dtype", "int8", "one of bfloat16, float16, float32"),
    ("accelerator.kind", "npu", "one of tpu, gpu, cpu"),
])
def test_check_field_refuses_with_the_range(key, value, fragment):
    reason = P.check_field(key, value)
    assert reason is not None
    assert fragment in reason
    assert repr(value) in reason


def test_field_specs_cover_the_dataclasses_in_file_order():
    keys = [s.key for s in P.field_specs()]
    assert keys[:2] == ["name", "description"]
    assert keys == list(P.flatten(P.Preset()))
    assert "base_dir" not in keys
    assert P.FIELD_SPECS["orpo.beta"].range_text == "> 0 and <= 100"
    assert all(s.help for s in P.field_specs()), "every key needs form help"


def _odd_values(fs: P.FieldSpec) -> list:
    import typing
    tp, origin = fs.type, typing.get_origin(fs.type)
    if origin is list:
        if typing.get_args(tp)[0] is int:
            return [[], [0], [0, 0, 0, 0, 0], [-1, -1, -1, -1, -1], [2, 2, 2, 2, 2], [1, -1, 1, 1, 1]]
        return [[], [""]]
    if origin is dict:
        return [{}, {"": []}, {"x": [""]}] if fs.key == "dataset.data_files" else [{}, {"": ""}, {"1A": "v"}]
    return {int: [0, -1, 3, 10**12], float: [0.0, -1.0, 1e-12, 1e9, float("nan"), float("inf")],
            bool: [True, False],
            str: ["", " ", "x", "v4-", "-", "~", "/", "a://b", "hf_abcdefghijklmnop1234"]}[tp]


@pytest.mark.parametrize("kind", ["cpu", "gpu", "tpu"])
def test_validate_never_raises_on_type_correct_values(kind):
    """The forms validate as you type: any well-typed value gives problems, never an exception."""
    base = P.load(REPO / "presets" / "tiny-cpu.toml")
    base.accelerator.kind = kind
    base.accelerator.type = {"cpu": "cpu", "gpu": "a100", "tpu": "v4-8"}[kind]
    crashes = []
    for fs in P.field_specs():
        for value in _odd_values(fs):
            p = base.copy()
            P.set_value(p, fs.key, value)
            try:
                problems = P.validate(p)
            except Exception as e:  # noqa: BLE001
                crashes.append(f"{fs.key}={value!r}: {type(e).__name__}: {e}")
                continue
            reason = P.check_field(fs.key, value)
            if reason:
                assert fs.key in [q.key for q in problems], (fs.key, value)
    assert crashes == []


# ---------------------------------------------------------------- diff

def test_diff_lists_exactly_the_changed_keys():
    a = P.load(REPO / "presets" / "qwen3-14b-v4-64.toml")
    b = a.copy()
    assert P.diff(a, b) == []
    b.orpo.beta = 0.2
    b.model.sharding_axis_dims = [1, 1, 1, -1, 1]
    b.accelerator.env["EXTRA"] = "1"
    b.name = "renamed"
    changes = P.diff(a, b)
    assert [k for k, _, _ in changes] == ["name", "model.sharding_axis_dims", "accelerator.env", "orpo.beta"]
    assert ("orpo.beta", 0.1, 0.2) in changes
    assert ("name", "qwen3-14b-v4-64", "renamed") in changes
    # Reverse direction swaps the values, same keys.
    assert [(k, new, old) for k, old, new in P.diff(b, a)] == changes
    # Setting a key back to its old value removes it.
    P.set_value(b, "orpo.beta", 0.1)
    assert "orpo.beta" not in [k for k, _, _ in P.diff(a, b)]


def test_diff_ignores_base_dir():
    a = P.load(REPO / "presets" / "tiny-cpu.toml")
    b = dataclasses.replace(a, base_dir=Path("/elsewhere"))
    assert P.diff(a, b) == []


# ---------------------------------------------------------------- secrets

def test_secret_status_reports_set_and_unset_never_values():
    p = P.Preset()
    env = {"HF_TOKEN_FOR_EASYDEL": "hf_abcdefghijklmnopQRST1234", "OTHER": "x"}
    status = P.secret_status(p, env)
    assert status == {"HF_TOKEN_FOR_EASYDEL": True, "WANDB_API_KEY_FOR_EASYDEL": False}
    assert all(type(v) is bool for v in status.values())
    assert "hf_abcdefghijklmnopQRST1234" not in repr(status)


def test_secret_status_empty_value_is_unset_and_names_follow_the_preset(monkeypatch):
    p = P.Preset()
    p.secrets.hf_token_env, p.secrets.wandb_api_key_env = "MY_HF", "MY_WB"
    monkeypatch.setenv("MY_HF", "")
    monkeypatch.setenv("MY_WB", "wandb-secret-value-42")
    monkeypatch.setenv("HF_TOKEN_FOR_EASYDEL", "hf_notthisonexxxxxxxx")
    status = P.secret_status(p)  # defaults to os.environ
    assert status == {"MY_HF": False, "MY_WB": True}
    assert "wandb-secret-value-42" not in repr(status)


def test_resolved_spec_holds_no_secret_values(monkeypatch):
    monkeypatch.setenv("HF_TOKEN_FOR_EASYDEL", "hf_qqDistinctTokenValue987")
    monkeypatch.setenv("WANDB_API_KEY_FOR_EASYDEL", "0123456789abcdef0123456789abcdef01234567")
    p = P.load(REPO / "presets" / "qwen3-14b-v4-64.toml")
    text = repr(resolve.resolved(p))
    assert "hf_qqDistinctTokenValue987" not in text
    assert "0123456789abcdef0123456789abcdef01234567" not in text


# ---------------------------------------------------------------- relative paths

def _tiny_tree(root: Path) -> None:
    (root / "models" / "m").mkdir(parents=True)
    (root / "data").mkdir()
    row = '{"prompt": "p", "chosen": "c", "rejected": "r"}\n'
    (root / "data" / "train.jsonl").write_text(row)
    (root / "data" / "test.jsonl").write_text(row)


PRESET_WITH_RELATIVE_PATHS = """
name = "rel"
[model]
id = "../models/m"
[dataset]
split = "train"
eval_split = "test"
[dataset.data_files]
train = ["../data/train.jsonl"]
test = ["../data/test.jsonl"]
[accelerator]
kind = "cpu"
type = "cpu"
[orpo]
total_batch_size = 4
max_prompt_length = 16
max_completion_length = 16
max_length = 32
[output]
save_directory = "ckpt"
"""


def test_relative_paths_resolve_against_the_preset_folder(tmp_path, monkeypatch):
    _tiny_tree(tmp_path)
    (tmp_path / "presets").mkdir()
    path = tmp_path / "presets" / "rel.toml"
    path.write_text(PRESET_WITH_RELATIVE_PATHS)
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    p = P.load(path)  # would fail if resolved against the cwd
    assert p.base_dir == (tmp_path / "presets").resolve()
    assert p.resolve(p.model.id) == (tmp_path / "models" / "m").resolve()
    assert p.resolve("/abs/x") == Path("/abs/x")
    spec = resolve.resolved(p, tmp_path / "runs" / "r1")
    assert spec["model"]["pretrained_model_name_or_path"] == str((tmp_path / "models" / "m").resolve())
    assert spec["dataset"]["data_files"] == {
        "train": [str((tmp_path / "data" / "train.jsonl").resolve())],
        "test": [str((tmp_path / "data" / "test.jsonl").resolve())]}
    assert spec["dataset"]["path"] == "json"
    assert spec["orpo"]["save_directory"] == str(tmp_path / "runs" / "r1" / "ckpt")


def test_missing_relative_path_is_reported_resolved(tmp_path, monkeypatch):
    _tiny_tree(tmp_path)
    (tmp_path / "models" / "m").rmdir()
    (tmp_path / "presets").mkdir()
    path = tmp_path / "presets" / "rel.toml"
    path.write_text(PRESET_WITH_RELATIVE_PATHS)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(P.PresetError) as e:
        P.load(path)
    assert e.value.key == "model.id"
    assert str((tmp_path / "models" / "m").resolve()) in str(e.value)


def test_shipped_tiny_preset_resolves_to_the_repo_assets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = P.load(REPO / "presets" / "tiny-cpu.toml")
    assert p.resolve(p.model.id) == ASSETS / "tiny-qwen3"
    assert p.resolve(p.dataset.data_files["train"][0]) == ASSETS / "preferences" / "train.jsonl"


def test_hub_ids_are_not_local_paths():
    assert not P.is_local_path("Qwen/Qwen3-14B")
    for ref in ("./m", "../m", "/m", "~/m", ".", ".."):
        assert P.is_local_path(ref)


# ---------------------------------------------------------------- PresetError

def test_preset_error_is_one_line_file_key_reason():
    e = P.PresetError("must be > 0", file="/x/p.toml", key="orpo.beta")
    assert str(e) == "/x/p.toml: orpo.beta: must be > 0"
    assert (e.file, e.key, e.reason) == ("/x/p.toml", "orpo.beta", "must be > 0")
    assert str(P.PresetError("bad", key="k")) == "k: bad"
    assert str(P.PresetError("bad")) == "bad"


# ---------------------------------------------------------------- accelerator catalog

def test_v4_64_is_32_chips_on_8_hosts():
    s = accelerators.tpu_slice("v4-64")
    assert (s.name, s.chips, s.hosts) == ("v4-64", 32, 8)
    assert s.generation.name == "v4"
    assert s.hbm_gib == 32 * 32.0
    assert s.peak_tflops == 32 * 275.0
    assert s.describe().startswith("v4-64: 32 chips on 8 hosts")
    assert accelerators.device_count("tpu", "v4-64") == 32
    assert accelerators.peak_tflops("tpu", "v4-64") == 32 * 275.0


@pytest.mark.parametrize(("name", "canonical", "chips", "hosts"), [
    ("v4-8", "v4-8", 4, 1),
    ("v4-16", "v4-16", 8, 2),
    ("V4-64 ", "v4-64", 32, 8),
    ("v5p-8", "v5p-8", 4, 1),
    ("v5e-1", "v5litepod-1", 1, 1),
    ("v5e-8", "v5litepod-8", 8, 1),
    ("v5e-16", "v5litepod-16", 16, 4),
    ("v5litepod-16", "v5litepod-16", 16, 4),
    ("v6e-8", "v6e-8", 8, 1),
    ("v6e-256", "v6e-256", 256, 64),
])
def test_slice_catalog(name, canonical, chips, hosts):
    s = accelerators.tpu_slice(name)
    assert (s.name, s.chips, s.hosts) == (canonical, chips, hosts)


def test_v5e_alias_is_the_same_slice_as_v5litepod():
    assert accelerators.tpu_slice("v5e-64") is accelerators.tpu_slice("v5litepod-64")


@pytest.mark.parametrize(("name", "sizes"), [
    ("v4-63", "8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096"),
    ("v5e-3", "1, 4, 8, 16, 32, 64, 128, 256"),
    ("v6e-2", "1, 4, 8, 16, 32, 64, 128, 256"),
])
def test_unknown_size_lists_the_generation_sizes(name, sizes):
    with pytest.raises(KeyError) as e:
        accelerators.tpu_slice(name)
    msg = e.value.args[0]
    assert repr(name) in msg and sizes in msg


@pytest.mark.parametrize("name", ["v9-8", "tpu", "a100", ""])
def test_unknown_generation_names_the_known_ones(name):
    with pytest.raises(KeyError) as e:
        accelerators.tpu_slice(name)
    msg = e.value.args[0]
    assert "v4-N" in msg and "v5litepod-N" in msg and "v4-64" in msg


def test_gpu_and_cpu_targets():
    assert accelerators.device_count("gpu", "a100", 8) == 8
    assert accelerators.device_count("cpu", "cpu", 4) == 1
    assert accelerators.peak_tflops("gpu", "H100", 2) == 2 * 989.0
    assert accelerators.peak_tflops("gpu", "unknown-gpu", 2) is None
    assert accelerators.peak_tflops("cpu", "cpu") is None
    assert accelerators.peak_tflops("tpu", "v4-63") is None


def test_save_as_elsewhere_keeps_pointing_at_the_same_files(tmp_path):
    first = P.load(REPO / "presets" / "tiny-cpu.toml")
    out = P.save(first, tmp_path / "deeper" / "mine.toml")
    second = P.load(out)
    assert second.resolve(second.model.id) == first.resolve(first.model.id)
    assert [second.resolve(f) for f in second.dataset.data_files["train"]] == \
        [first.resolve(f) for f in first.dataset.data_files["train"]]
