"""Dataset preflight: formats, token counts, truncation, bad pairs, exit codes.

Every case starts from the tiny CPU preset (absolute asset paths) and, where a
format is under test, a small JSONL file written in tmp_path from the shipped
pairs. Token counts are checked against the real tokenizer called directly
here; the e2e test checks them against EasyDeL's own ORPOPreprocessTransform.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from orpo_tui import cli
from orpo_tui import preflight as F
from orpo_tui import preset as P

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
TRAIN = ASSETS / "preferences" / "train.jsonl"
SHIPPED = [json.loads(line) for line in TRAIN.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_preset(tmp_path: Path, train: Path = TRAIN, name: str = "pf", **orpo: int) -> Path:
    """The tiny CPU preset with absolute paths, training on `train`, with orpo.* overrides."""
    data = tomllib.loads((REPO / "presets" / "tiny-cpu.toml").read_text(encoding="utf-8"))
    data["model"]["id"] = str(ASSETS / "tiny-qwen3")
    data["dataset"]["data_files"] = {"train": [str(train)]}
    data["orpo"].update(orpo)
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def write_jsonl(tmp_path: Path, rows: list[dict[str, Any]], name: str = "pairs.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def user_turn(row: dict[str, Any]) -> dict[str, str]:
    return row["chosen"][0]


def answer(row: dict[str, Any], side: str) -> str:
    return row[side][1]["content"]


def implicit(rows):  # (a) without the seed's extra columns
    return [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def explicit_conversational(rows):  # (b)
    return [{"prompt": [user_turn(r)], "chosen": [r["chosen"][1]], "rejected": [r["rejected"][1]]} for r in rows]


def explicit_text(rows):  # (c)
    return [{"prompt": user_turn(r)["content"], "chosen": answer(r, "chosen"), "rejected": answer(r, "rejected")}
            for r in rows]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ASSETS / "tiny-qwen3"))


def n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def chat_lengths(tok, row: dict[str, Any]) -> tuple[int, int, int]:
    """Prompt / chosen / rejected tokens of a conversation pair, computed directly."""
    prompt = tok.apply_chat_template([user_turn(row)], tokenize=False, add_generation_prompt=True)
    out = [n_tokens(tok, prompt)]
    for side in ("chosen", "rejected"):
        full = tok.apply_chat_template([user_turn(row), row[side][1]], tokenize=False)
        assert full.startswith(prompt)
        out.append(n_tokens(tok, full[len(prompt):]) + 1)  # + the EOS EasyDeL appends
    return tuple(out)


def text_lengths(tok, row: dict[str, Any]) -> tuple[int, int, int]:
    return (n_tokens(tok, user_turn(row)["content"]), n_tokens(tok, answer(row, "chosen")) + 1,
            n_tokens(tok, answer(row, "rejected")) + 1)


def run(tmp_path: Path, rows: list[dict[str, Any]] | None = None, **orpo: int) -> F.PreflightReport:
    train = write_jsonl(tmp_path, rows) if rows is not None else TRAIN
    return F.run_preflight(P.load(write_preset(tmp_path, train, **orpo)))


def nearest_rank(values: list[int], pct: int) -> int:
    ordered = sorted(values)
    return ordered[-(-pct * len(ordered) // 100) - 1]


# ---------------------------------------------------------------- the shipped set

@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> F.PreflightReport:
    return run(tmp_path_factory.mktemp("shipped"))


def test_shipped_set_is_implicit_conversational_and_clean(shipped):
    r = shipped
    assert r.ok and r.blocking == [] and r.warnings == []
    assert r.format == F.IMPLICIT_CONVERSATIONAL
    assert (r.n_total, r.n_pairs, r.sampled) == (len(SHIPPED), len(SHIPPED), False)
    assert (r.n_identical, r.n_empty, r.n_prompt_twice, r.n_empty_prompt) == (0, 0, 0, 0)
    assert r.truncation.any == 0
    assert any("`prompt` column is not used" in n for n in r.notes)
    assert any("'<|im_end|>' twice" in n for n in r.notes)


def test_shipped_counts_equal_the_tokenizer(shipped, tok):
    expected = [chat_lengths(tok, row) for row in SHIPPED]
    assert [x[1:] for x in shipped.pair_lengths] == expected
    assert [x[0] for x in shipped.pair_lengths] == list(range(len(SHIPPED)))
    for i, key in enumerate(("prompt", "chosen", "rejected")):
        values = [e[i] for e in expected]
        s = shipped.lengths[key]
        assert (s.min, s.max, s.p95, s.p99) == (min(values), max(values), nearest_rank(values, 95),
                                                nearest_rank(values, 99))
        assert s.mean == round(sum(values) / len(values), 2)
        assert sum(b.count for b in s.histogram) == len(values)


def test_example_marks_prompt_and_completion(shipped, tok):
    ex = shipped.example
    row = SHIPPED[ex.row]
    assert ex.prompt_text == f"<|im_start|>user\n{user_turn(row)['content']}<|im_end|>\n<|im_start|>assistant\n"
    assert ex.chosen_text == f"{answer(row, 'chosen')}<|im_end|>\n"
    assert ex.eos_token == "<|im_end|>"
    assert (ex.prompt_tokens, ex.chosen_tokens, ex.rejected_tokens) == chat_lengths(tok, row)
    text = F.render_text(shipped)
    assert "‖" + answer(row, "chosen") in text
    assert f"⟦{answer(row, 'chosen')}<|im_end|>↵⟧+<|im_end|>" in text
    assert "ok: nothing blocks a run" in text


def test_suggested_lengths_keep_95_and_99_percent(shipped, tok):
    expected = [chat_lengths(tok, row) for row in SHIPPED]
    prompt = [e[0] for e in expected]
    completion = [max(e[1], e[2]) for e in expected]
    total = [p + c for p, c in zip(prompt, completion)]
    for key, values in (("max_prompt_length", prompt), ("max_completion_length", completion),
                        ("max_length", total)):
        s = shipped.suggested[key]
        assert (s.p95, s.p99) == (nearest_rank(values, 95), nearest_rank(values, 99))
        assert sum(v <= s.p95 for v in values) >= 0.95 * len(values)
        assert sum(v <= s.p99 - 1 for v in values) < 0.99 * len(values)  # and no smaller length would do


def test_histogram_bins_split_at_the_limit():
    bins = F.histogram(list(range(10, 30)), bins=4)  # width 5
    assert [(b.lo, b.hi, b.count) for b in bins] == [(10, 14, 5), (15, 19, 5), (20, 24, 5), (25, 29, 5)]
    bins = F.histogram(list(range(10, 30)), bins=4, limit=21)
    assert [(b.lo, b.hi, b.count) for b in bins] == [(10, 14, 5), (15, 19, 5), (20, 21, 2), (22, 24, 3),
                                                     (25, 29, 5)]
    lines = F.render_histogram(F.length_stats(list(range(10, 30)), 21))
    assert sum("▒" in line for line in lines) == sum(b.hi > 21 for b in F.histogram(list(range(10, 30)), limit=21))
    assert F.histogram([7, 7, 7]) == [F.HistogramBin(7, 7, 3)]


def test_percentile_length():
    assert F.percentile_length(list(range(1, 101)), 95) == 95
    assert F.percentile_length(list(range(1, 101)), 99) == 99
    assert F.percentile_length([5] * 19 + [100], 95) == 5
    assert F.percentile_length([5] * 18 + [100, 100], 95) == 100
    assert F.percentile_length([], 95) == 0


# ---------------------------------------------------------------- the three formats

@pytest.mark.parametrize("make, fmt, lengths", [
    (implicit, F.IMPLICIT_CONVERSATIONAL, chat_lengths),
    (explicit_conversational, F.EXPLICIT_CONVERSATIONAL, chat_lengths),
    (explicit_text, F.EXPLICIT_TEXT, text_lengths),
])
def test_formats_are_detected_and_counted(tmp_path, tok, make, fmt, lengths):
    rows = SHIPPED[:24]
    r = run(tmp_path, make(rows))
    assert r.format == fmt and r.blocking == []
    assert [x[1:] for x in r.pair_lengths] == [lengths(tok, row) for row in rows]
    if fmt == F.EXPLICIT_TEXT:
        assert any("applies no chat template" in w for w in r.warnings)
        assert r.example.prompt_text == user_turn(rows[0])["content"]


def test_implicit_text_pairs_split_at_their_common_prefix(tmp_path, tok):
    rows = [{"chosen": f"Q: {user_turn(r)['content']} A: {answer(r, 'chosen')}",
             "rejected": f"Q: {user_turn(r)['content']} A: {answer(r, 'rejected')}"} for r in SHIPPED[:6]]
    r = run(tmp_path, rows)
    assert r.format == F.IMPLICIT_TEXT and r.ok
    assert r.example.prompt_text == f"Q: {user_turn(SHIPPED[0])['content']} A:"  # the space goes to the answer
    assert r.example.chosen_text == f" {answer(SHIPPED[0], 'chosen')}"
    assert r.pair_lengths[0][1:] == (n_tokens(tok, r.example.prompt_text), n_tokens(tok, r.example.chosen_text) + 1,
                                     n_tokens(tok, r.example.rejected_text) + 1)
    assert any("applies no chat template" in w for w in r.warnings)


def test_prompt_counted_twice_blocks(tmp_path, capsys):
    rows = [{"prompt": [user_turn(r)], "chosen": r["chosen"], "rejected": r["rejected"]} for r in SHIPPED[:12]]
    preset = write_preset(tmp_path, write_jsonl(tmp_path, rows))
    assert cli.main(["preflight", "--preset", str(preset)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prompt counted twice in 12/12 pairs" in err[0] and "pairs.jsonl" in err[0]
    assert "Traceback" not in err[0]


def test_conversational_prompt_with_text_answers_blocks(tmp_path):
    rows = [{"prompt": [user_turn(r)], "chosen": answer(r, "chosen"), "rejected": answer(r, "rejected")}
            for r in SHIPPED[:8]]
    r = run(tmp_path, rows)
    assert r.format == F.MISMATCHED
    assert any("ignores the prompt column" in b for b in r.blocking)


# ---------------------------------------------------------------- truncation

def test_truncation_shares_on_known_lengths(tmp_path, tok):
    rows = SHIPPED[:40]
    expected = [chat_lengths(tok, row) for row in rows]
    limits = {"max_prompt_length": 15, "max_completion_length": 14, "max_length": 30}
    r = run(tmp_path, rows, **limits)
    prompt_cut = sum(p > 15 for p, _, _ in expected)
    completion_cut = sum(max(c, d) > 14 for _, c, d in expected)
    total_cut = sum(p + max(c, d) > 30 for p, c, d in expected)
    any_cut = sum(p > 15 or max(c, d) > 14 or p + max(c, d) > 30 for p, c, d in expected)
    assert 0 < prompt_cut < 40 and 0 < completion_cut < 40 and 0 < any_cut < 40  # a known subset
    t = r.truncation
    assert (t.prompt, t.completion, t.total, t.any) == (prompt_cut, completion_cut, total_cut, any_cut)
    assert t.prompt_share == round(prompt_cut / 40, 4) and t.any_share == round(any_cut / 40, 4)
    assert r.ok and any("truncated" in w for w in r.warnings)
    assert r.lengths["chosen"].over_limit == sum(c > 14 for _, c, _ in expected)


def test_example_shows_where_the_limits_cut(tmp_path, tok):
    r = run(tmp_path, SHIPPED[:4], max_prompt_length=5, max_completion_length=3, max_length=8)
    ex = r.example
    ids = tok(ex.prompt_text, add_special_tokens=False)["input_ids"]
    assert ex.prompt_cut == tok.decode(ids[:-5], skip_special_tokens=False)  # EasyDeL keeps the prompt's end
    assert ex.chosen_cut and ex.prompt_cut
    assert "✂" in F.render_text(r)


def test_every_pair_truncated_blocks(tmp_path, capsys):
    preset = write_preset(tmp_path, write_jsonl(tmp_path, SHIPPED[:16]), max_prompt_length=4,
                          max_completion_length=32, max_length=64)
    assert cli.main(["preflight", "--preset", str(preset)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "orpo.max_prompt_length: every pair is truncated" in lines[0] and "pairs.jsonl" in lines[0]
    assert "BLOCKED:" in out  # the report is still printed


# ---------------------------------------------------------------- bad pairs

def test_identical_and_empty_pairs_are_warned(tmp_path):
    rows = [dict(r) for r in SHIPPED[:10]]
    rows[2] = {**rows[2], "rejected": rows[2]["chosen"]}
    rows[7] = {**rows[7], "rejected": rows[7]["chosen"]}
    rows[4] = {**rows[4], "chosen": [user_turn(rows[4]), {"role": "assistant", "content": ""}]}
    r = run(tmp_path, rows)
    assert (r.n_identical, r.identical_rows) == (2, [2, 7])
    assert (r.n_empty, r.empty_rows) == (1, [4])
    assert r.ok
    assert any("chosen equals rejected in 2 pairs (rows 2, 7)" in w for w in r.warnings)
    assert any("empty in 1 pairs (rows 4)" in w for w in r.warnings)
    assert r.example.row == 0


def test_text_format_identical_and_empty(tmp_path):
    rows = explicit_text(SHIPPED[:6])
    rows[1]["rejected"] = rows[1]["chosen"]
    rows[3]["chosen"] = ""
    r = run(tmp_path, rows)
    assert (r.identical_rows, r.empty_rows) == ([1], [3])


def test_all_identical_blocks(tmp_path):
    rows = [{"chosen": r["chosen"], "rejected": r["chosen"]} for r in SHIPPED[:5]]
    r = run(tmp_path, rows)
    assert any("chosen equals rejected in every pair" in b for b in r.blocking)


# ---------------------------------------------------------------- missing columns, CLI

def test_missing_columns_exit_2_with_one_line(tmp_path, capsys):
    rows = [{"prompt": r["prompt"], "chosen": r["chosen"]} for r in SHIPPED[:5]]
    preset = write_preset(tmp_path, write_jsonl(tmp_path, rows, "norejected.jsonl"))
    assert cli.main(["preflight", "--preset", str(preset)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1
    assert "norejected.jsonl" in lines[0] and "rejected" in lines[0] and "Traceback" not in lines[0]


def test_missing_columns_in_an_unchecked_preset_block(tmp_path):
    # The console hands over presets as edited, not re-read from disk.
    rows = [{"prompt": r["prompt"], "answer": r["chosen"]} for r in SHIPPED[:5]]
    train = write_jsonl(tmp_path, rows, "odd.jsonl")
    data = tomllib.loads(write_preset(tmp_path, train).read_text())
    r = F.run_preflight(P.from_dict(data))
    assert r.n_pairs == 0 and len(r.blocking) == 1
    assert r.blocking[0].startswith(f"{train}: dataset.data_files.train: missing columns chosen, rejected")


def test_unreadable_dataset_blocks(tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"chosen": [}\n')
    data = tomllib.loads(write_preset(tmp_path, bad).read_text())
    r = F.run_preflight(P.from_dict(data))
    assert len(r.blocking) == 1 and r.blocking[0].startswith(f"{bad}: dataset.data_files.train: cannot load")


def test_jsonl_output_parses(tmp_path, capsys):
    assert cli.main(["preflight", "--preset", str(write_preset(tmp_path)), "--jsonl"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    data = json.loads(out[0])
    assert data["ok"] is True and data["format"] == F.IMPLICIT_CONVERSATIONAL
    assert data["n_pairs"] == len(SHIPPED) and data["blocking"] == []
    assert set(data["lengths"]) == {"prompt", "chosen", "rejected", "total"}
    assert data["suggested"]["max_prompt_length"]["p95"] > 0
    assert "pair_lengths" not in data


def test_jsonl_output_on_a_blocked_run(tmp_path, capsys):
    preset = write_preset(tmp_path, write_jsonl(tmp_path, SHIPPED[:8]), max_prompt_length=2,
                          max_completion_length=32, max_length=64)
    assert cli.main(["preflight", "--preset", str(preset), "--jsonl"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["ok"] is False and len(err.strip().splitlines()) == 1


def test_sampling_is_deterministic(tmp_path):
    a = run(tmp_path, None)
    preset = P.load(write_preset(tmp_path))
    s1, s2 = F.run_preflight(preset, sample=50), F.run_preflight(preset, sample=50)
    assert (s1.n_total, s1.n_pairs, s1.sampled) == (len(SHIPPED), 50, True)
    assert s1.pair_lengths == s2.pair_lengths
    rows = [x[0] for x in s1.pair_lengths]
    assert rows == sorted(rows) and len(set(rows)) == 50 and max(rows) > 200  # spread over the file
    full = {x[0]: x for x in a.pair_lengths}
    assert all(full[x[0]] == x for x in s1.pair_lengths)
    assert any("fixed sample of 50 of 320" in n for n in s1.notes)


def test_max_examples_is_honoured(tmp_path):
    data = tomllib.loads(write_preset(tmp_path).read_text())
    data["dataset"]["max_examples"] = 7
    r = F.run_preflight(P.from_dict(data))
    assert (r.n_total, r.n_pairs) == (7, 7)


# ---------------------------------------------------------------- against EasyDeL itself

EASYDEL_PROBE = r"""
import json, sys
from datasets import load_dataset
from transformers import AutoTokenizer
from easydel.trainers.prompt_transforms import ORPOPreprocessTransform

tokenizer_dir, cases = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(tokenizer_dir)
if tok.pad_token_id is None:
    tok.pad_token_id = tok.eos_token_id
out = {}
for name, (path, max_prompt, max_completion) in cases.items():
    transform = ORPOPreprocessTransform(tokenizer=tok, max_prompt_length=max_prompt,
                                        max_completion_length=max_completion)
    counts = []
    for row in load_dataset("json", data_files={"train": [path]}, split="train"):
        got = transform(dict(row))
        p = sum(got["prompt_attention_mask"])
        counts.append([p, sum(got["chosen_attention_mask"]) - p, sum(got["rejected_attention_mask"]) - p])
    out[name] = counts
print(json.dumps(out))
"""


@pytest.mark.e2e
def test_counts_match_easydels_orpo_transform(tmp_path):
    rows = SHIPPED[:16]
    # EasyDeL's corner cases: identical pairs (its prompt extraction keeps the last turn / character),
    # an empty answer, a system turn and a second exchange, ShareGPT from/value messages, and
    # implicit plain-text pairs split at their common prefix.
    quirky = implicit(rows[:6])
    quirky[1]["rejected"] = quirky[1]["chosen"]
    quirky[2]["chosen"] = [user_turn(rows[2]), {"role": "assistant", "content": ""}]
    quirky[3] = {side: [{"role": "system", "content": "Be brief."}, user_turn(rows[3]), rows[3][side][1],
                        {"role": "user", "content": "And again?"}, rows[3][side][1]] for side in ("chosen", "rejected")}
    quirky[4]["rejected"] = quirky[4]["rejected"][:1] + [{"role": "assistant", "content": " "}]
    sharegpt = [{side: [{"from": {"user": "human", "assistant": "gpt"}[m["role"]], "value": m["content"]}
                        for m in r[side]] for side in ("chosen", "rejected")} for r in rows[:6]]
    text_pairs = [{"chosen": f"Q: {user_turn(r)['content']} A: {answer(r, 'chosen')}",
                   "rejected": f"Q: {user_turn(r)['content']} A: {answer(r, 'rejected')}"} for r in rows[:6]]
    text_pairs[2]["rejected"] = text_pairs[2]["chosen"]
    files = {"shipped": TRAIN, "implicit": write_jsonl(tmp_path, implicit(rows), "a.jsonl"),
             "explicit_conversational": write_jsonl(tmp_path, explicit_conversational(rows), "b.jsonl"),
             "explicit_text": write_jsonl(tmp_path, explicit_text(rows), "c.jsonl"),
             "quirky": write_jsonl(tmp_path, quirky, "quirky.jsonl"),
             "sharegpt": write_jsonl(tmp_path, sharegpt, "sharegpt.jsonl"),
             "implicit_text": write_jsonl(tmp_path, text_pairs, "text.jsonl")}
    wide = {"max_prompt_length": 400, "max_completion_length": 400, "max_length": 800}
    tight = {"max_prompt_length": 15, "max_completion_length": 12, "max_length": 27}
    cases, expected = {}, {}
    for name, path in files.items():
        for label, limits in (("wide", wide), ("tight", tight)):
            key = f"{name}/{label}"
            cases[key] = [str(path), limits["max_prompt_length"], limits["max_completion_length"]]
            r = F.run_preflight(P.load(write_preset(tmp_path, path, name=key.replace("/", "-"), **limits)))
            assert r.blocking == [], r.blocking
            # EasyDeL keeps at most the limit of each part: the non-pad tokens it produces.
            mp, mc = limits["max_prompt_length"], limits["max_completion_length"]
            expected[key] = [[min(p, mp), min(c, mc), min(d, mc)] for _, p, c, d in r.pair_lengths]
    proc = subprocess.run([sys.executable, "-c", EASYDEL_PROBE, str(ASSETS / "tiny-qwen3"), json.dumps(cases)],
                          capture_output=True, text=True, timeout=300, env={"JAX_PLATFORMS": "cpu",
                                                                             **_env()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in cases:
        assert got[key] == expected[key], key
    # The wide cases are untruncated, so those are EasyDeL's full lengths.
    assert any(p > 15 for p, _, _ in got["shipped/wide"])


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
