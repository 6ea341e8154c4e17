#!/usr/bin/env python
"""Regenerate the tiny assets shipped in ``assets/`` (deterministically).

Writes, under ``--out`` (default: the folder this script lives in):

* ``preferences/train.jsonl`` (320 pairs) and ``preferences/test.jsonl`` (32 pairs):
  a synthetic preference set in the schema of ``mlabonne/orpo-dpo-mix-40k``
  (``source``, ``chosen``, ``rejected``, ``prompt``, ``question``).
* ``tiny-qwen3/``: a randomly initialised (``torch.manual_seed(0)``) two-layer
  Qwen3 causal LM in Hugging Face format (float32 safetensors) plus a 512-token
  byte-level BPE tokenizer trained on the preference text, with a ChatML
  chat template.

Usage::

    .venv/bin/python assets/make_tiny_assets.py [--out DIR]

Running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
from pathlib import Path

SEED = 0
N_TRAIN = 320
N_TEST = 32
VOCAB_SIZE = 512

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END]  # ids 0, 1, 2

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

# --------------------------------------------------------------------------------------
# Synthetic preference data
# --------------------------------------------------------------------------------------

WORDS = [
    "apple", "banana", "cherry", "garden", "planet", "rocket", "silver", "window",
    "yellow", "dragon", "forest", "castle", "pencil", "butter", "guitar", "island",
    "jungle", "kitten", "lemon", "mirror", "orange", "pepper", "rabbit", "summer",
    "tomato", "violet", "winter", "zebra", "bridge", "candle", "dollar", "engine",
    "flower", "hammer", "jacket", "ladder", "monkey", "number", "ocean", "puzzle",
    "river", "school", "ticket", "turtle", "wallet", "cloud", "spoon", "table",
    "chair", "house", "music", "piano", "train", "water", "horse", "light",
]

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Peru", "Lima"),
    ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Poland", "Warsaw"),
    ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Chile", "Santiago"),
    ("Cuba", "Havana"), ("Russia", "Moscow"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Thailand", "Bangkok"), ("Mexico", "Mexico City"),
]

COLOURS = [
    ("the sky on a clear day", "blue"), ("fresh grass", "green"), ("snow", "white"),
    ("a ripe banana", "yellow"), ("coal", "black"), ("a ripe tomato", "red"),
    ("a carrot", "orange"), ("a lemon", "yellow"), ("milk", "white"), ("a lime", "green"),
    ("a strawberry", "red"), ("the night sky", "black"), ("a pumpkin", "orange"),
    ("an emerald", "green"), ("a sapphire", "blue"), ("chocolate", "brown"),
]
COLOUR_NAMES = sorted({c for _, c in COLOURS} | {"purple", "pink", "grey"})

POLITE = ["", "", "Sure! ", "Of course. ", "Happy to help. ", "Good question! "]
RUDE = [
    "Figure it out yourself.",
    "Who cares? Ask someone else.",
    "That is a silly question.",
    "Not my problem.",
    "Ugh, stop asking me things.",
    "Look it up, I am busy.",
]
RUDE_PREFIX = ["Ugh, ", "Obviously ", "Whatever. ", "Duh, "]


def _wrong_number(rng: random.Random, right: int) -> int:
    while True:
        wrong = right + rng.choice([-3, -2, -1, 1, 2, 3, 10])
        if wrong >= 0 and wrong != right:
            return wrong


def _task_add(rng):
    a, b = rng.randint(0, 50), rng.randint(0, 50)
    q = rng.choice(["What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} + {b}."]).format(a=a, b=b)
    return "synthetic-arith", q, f"{a} + {b} = {a + b}.", f"{a} + {b} = {_wrong_number(rng, a + b)}."


def _task_sub(rng):
    a = rng.randint(5, 60)
    b = rng.randint(0, a)
    q = rng.choice(["What is {a} - {b}?", "Subtract {b} from {a}."]).format(a=a, b=b)
    return "synthetic-arith", q, f"{a} - {b} = {a - b}.", f"{a} - {b} = {_wrong_number(rng, a - b)}."


def _task_mul(rng):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    q = rng.choice(["What is {a} times {b}?", "What is {a} * {b}?"]).format(a=a, b=b)
    return "synthetic-arith", q, f"{a} * {b} = {a * b}.", f"{a} * {b} = {_wrong_number(rng, a * b)}."


def _task_reverse(rng):
    w = rng.choice(WORDS)
    q = rng.choice(["Reverse the word '{w}'.", "Spell '{w}' backwards."]).format(w=w)
    letters = list(w)
    while True:
        rng.shuffle(letters)
        scrambled = "".join(letters)
        if scrambled != w[::-1]:
            break
    wrong = rng.choice([w, scrambled])
    return "synthetic-reverse", q, f"'{w}' reversed is '{w[::-1]}'.", f"'{w}' reversed is '{wrong}'."


def _task_count(rng):
    w = rng.choice(WORDS)
    q = rng.choice(["How many letters are in '{w}'?", "Count the letters in '{w}'."]).format(w=w)
    n = len(w)
    return "synthetic-count", q, f"'{w}' has {n} letters.", f"'{w}' has {_wrong_number(rng, n)} letters."


def _task_capital(rng):
    country, capital = rng.choice(CAPITALS)
    q = rng.choice(["What is the capital of {c}?", "Name the capital city of {c}."]).format(c=country)
    wrong = rng.choice([cap for _, cap in CAPITALS if cap != capital])
    return "synthetic-capitals", q, f"The capital of {country} is {capital}.", f"The capital of {country} is {wrong}."


def _task_colour(rng):
    thing, colour = rng.choice(COLOURS)
    q = rng.choice(["What colour is {t}?", "Which colour is {t}?"]).format(t=thing)
    wrong = rng.choice([c for c in COLOUR_NAMES if c != colour])
    return "synthetic-colours", q, f"It is {colour}.", f"It is {wrong}."


TASKS = [_task_add, _task_sub, _task_mul, _task_reverse, _task_count, _task_capital, _task_colour]


def make_pairs(n: int, seed: int = SEED) -> list[dict]:
    """``n`` preference pairs with distinct prompts, in ``orpo-dpo-mix-40k`` schema."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    while len(rows) < n:
        source, question, good, wrong = rng.choice(TASKS)(rng)
        if question in seen:
            continue
        seen.add(question)
        chosen = rng.choice(POLITE) + good
        style = rng.random()
        if style < 0.6:
            rejected = wrong  # plainly wrong
        elif style < 0.8:
            rejected = rng.choice(RUDE)  # rude refusal
        else:
            rejected = rng.choice(RUDE_PREFIX) + wrong[0].lower() + wrong[1:]  # rude and wrong
        assert chosen != rejected
        user = {"role": "user", "content": question}
        rows.append(
            {
                "source": source,
                "chosen": [user, {"role": "assistant", "content": chosen}],
                "rejected": [user, {"role": "assistant", "content": rejected}],
                "prompt": question,
                "question": question,
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def corpus_text(rows: list[dict]) -> list[str]:
    """Texts the tokenizer is trained on (ChatML-rendered conversations)."""
    texts = []
    for row in rows:
        for key in ("chosen", "rejected"):
            texts.append(
                "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in row[key])
            )
    return texts


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Pad with never-used tokens if BPE ran out of merges, so the vocab is exactly VOCAB_SIZE.
    n = tok.get_vocab_size()
    if n < VOCAB_SIZE:
        tok.add_special_tokens([f"<|reserved_{i}|>" for i in range(VOCAB_SIZE - n)])
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=512,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------


def make_model(tokenizer):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),  # Qwen3 convention: bos = <|endoftext|>
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    model = Qwen3ForCausalLM(config).to(torch.float32).eval()
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    return model


def _canonical_json(path: Path) -> None:
    """Rewrite a JSON file with sorted keys so its bytes do not depend on dict order."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(data, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output folder")
    args = parser.parse_args()
    out = Path(args.out)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    # 1. Data first (the tokenizer is trained on it).
    rows = make_pairs(N_TRAIN + N_TEST)
    pref_dir = out / "preferences"
    pref_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(pref_dir / "train.jsonl", rows[:N_TRAIN])
    write_jsonl(pref_dir / "test.jsonl", rows[N_TRAIN:])

    # 2. Tokenizer + model.
    model_dir = out / "tiny-qwen3"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    tokenizer = train_tokenizer(corpus_text(rows))
    tokenizer.save_pretrained(str(model_dir))
    model = make_model(tokenizer)
    model.save_pretrained(str(model_dir), safe_serialization=True)

    for p in sorted(model_dir.glob("*.json")):
        if p.name != "tokenizer.json":
            _canonical_json(p)

    written = sorted(
        p for d in (pref_dir, model_dir) for p in d.rglob("*") if p.is_file()
    )
    for p in written:
        os.chmod(p, 0o644)  # safetensors writes 0600; make the files ordinary
        print(f"{p.stat().st_size:>9}  {p.relative_to(out)}")


if __name__ == "__main__":
    main()
