"""The one tokenizer (``actionvos.tokenizer``, on the ``tokenizers`` library) gives the ids of transformers'
``RobertaTokenizerFast`` (spec 3.3: padding to the longest, pad id 1) on a few hundred prompts, non-ASCII and long
ones included; folders saved by transformers (``tokenizer.json``) read the same."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import train_tiny_tokenizer  # noqa: E402

from actionvos.errors import InputError  # noqa: E402
from actionvos.tokenizer import Tokenizer  # noqa: E402

FIXED = [
    "box used in the action of move box",
    "right hand used in the action of put cereals bag into cereals box",
    " leading and trailing spaces ",
    "Ünïcode ☕ cup  with  double  spaces",
    "a <mask> token and x</s>y inside",
    "tab\there\nnewline",
    "CAPS 123 4.5 punctuation!?",
    "日本語のテキスト と 絵文字 🙂👍🏽",
    "pen",
]
WORDS = ["box", "pen", "right", "hand", "left", "bottle", "rotate", "move", "cut", "apple", "knife", "Öl", "café",
         "naïve", "Ζεύς", "кружка", "수저", "🍎", "x</s>", "<pad>", "\t", "  ", "won't", "e.g.", "3.14", "—", "\u00a0"]


def _prompts(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = list(FIXED)
    while len(out) < n:
        k = rng.choice([1, 3, 8, 20, 60])  # up to long prompts (hundreds of tokens)
        text = " ".join(rng.choice(WORDS) for _ in range(k))
        if text.strip():
            out.append(text)
    return out


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


def _reference(folder: Path):
    from transformers import RobertaTokenizerFast

    return RobertaTokenizerFast.from_pretrained(str(folder), local_files_only=True)


def test_ids_equal_roberta_tokenizer_fast(tok_dir):
    ours, ref = Tokenizer.from_dir(tok_dir), _reference(tok_dir)
    prompts = _prompts()
    assert len(prompts) >= 300 and max(len(p) for p in prompts) > 300
    for batch in (prompts[i:i + 25] for i in range(0, len(prompts), 25)):
        ids, mask = ours(batch)
        enc = ref(batch, padding="longest", return_tensors="np")
        assert ids.dtype == np.int64 and mask.dtype == np.int64
        np.testing.assert_array_equal(ids, enc["input_ids"])
        np.testing.assert_array_equal(mask, enc["attention_mask"])
    for p in prompts[:40]:  # one at a time (no padding) as well
        np.testing.assert_array_equal(ours([p])[0][0], ref(p)["input_ids"])


def test_sha_names_the_files(tok_dir, tmp_path):
    a = Tokenizer.from_dir(tok_dir)
    assert a.sha256 == Tokenizer.from_dir(tok_dir).sha256 == Tokenizer.from_files(a.files, "x").sha256
    other_dir = tmp_path / "t2"
    shutil.copytree(tok_dir, other_dir)
    vocab = json.loads((other_dir / "vocab.json").read_text())
    vocab["extra_token"] = len(vocab)
    (other_dir / "vocab.json").write_text(json.dumps(vocab))
    assert Tokenizer.from_dir(other_dir).sha256 != a.sha256


def test_tokenizer_errors(tmp_path, tok_dir):
    with pytest.raises(InputError, match="does not exist"):
        Tokenizer.from_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="vocab.json"):
        Tokenizer.from_dir(tmp_path / "empty")
    with pytest.raises(InputError, match="non-empty"):
        Tokenizer.from_dir(tok_dir)(["ok", "  "])


def test_tokenizer_json_folder_matches(tok_dir, tmp_path):
    """A folder saved by transformers (tokenizer.json, maybe without vocab/merges) tokenises like RobertaTokenizerFast."""
    _reference(tok_dir).save_pretrained(str(tmp_path / "saved"))
    for f in ("vocab.json", "merges.txt"):
        (tmp_path / "saved" / f).unlink(missing_ok=True)
    ref, ours = _reference(tmp_path / "saved"), Tokenizer.from_dir(tmp_path / "saved")
    prompts = _prompts(60, seed=1)
    ids, mask = ours(prompts)
    enc = ref(prompts, padding="longest", return_tensors="np")
    np.testing.assert_array_equal(ids, enc["input_ids"])
    np.testing.assert_array_equal(mask, enc["attention_mask"])
