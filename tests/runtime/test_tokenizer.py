"""The torch-free tokenizer gives the ids of ``RobertaTokenizerFast`` (spec 3.3: padding to the longest, pad id 1)."""

from __future__ import annotations

import numpy as np
import pytest

from actionvos.errors import InputError
from actionvos.runtime.tokenizer import BpeTokenizer

PROMPTS = [
    "box used in the action of move box",
    "right hand used in the action of put cereals bag into cereals box",
    " leading and trailing spaces ",
    "Ünïcode ☕ cup  with  double  spaces",
    "a <mask> token and x</s>y inside",
    "tab\there\nnewline",
    "CAPS 123 4.5 punctuation!?",
    "pen",
]


def test_ids_equal_roberta_tokenizer_fast(tok_dir):
    from actionvos.model.text import load_tokenizer, tokenize

    ours = BpeTokenizer.from_dir(tok_dir)
    ref = load_tokenizer(tok_dir)
    ids, mask = ours(PROMPTS)
    rids, rmask = tokenize(ref, PROMPTS)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    np.testing.assert_array_equal(ids, rids.numpy())
    np.testing.assert_array_equal(mask, rmask.numpy())
    assert (ids[:, 0] == 0).all() and ids[mask == 0].tolist() == [1] * int((mask == 0).sum())
    for p in PROMPTS:  # one at a time (no padding) as well
        np.testing.assert_array_equal(ours([p])[0], tokenize(ref, [p])[0].numpy())


def test_tokenizer_id_names_the_files(tok_dir, tmp_path):
    a = BpeTokenizer.from_dir(tok_dir)
    assert a.tokenizer_id == BpeTokenizer.from_dir(tok_dir).tokenizer_id
    import json
    import shutil

    other_dir = tmp_path / "t2"
    shutil.copytree(tok_dir, other_dir)
    vocab = json.loads((other_dir / "vocab.json").read_text())
    vocab["extra_token"] = len(vocab)
    (other_dir / "vocab.json").write_text(json.dumps(vocab))
    assert BpeTokenizer.from_dir(other_dir).tokenizer_id != a.tokenizer_id


def test_tokenizer_errors(tmp_path, tok_dir):
    with pytest.raises(InputError, match="does not exist"):
        BpeTokenizer.from_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="vocab.json"):
        BpeTokenizer.from_dir(tmp_path / "empty")
    with pytest.raises(InputError, match="non-empty"):
        BpeTokenizer.from_dir(tok_dir)(["ok", "  "])


def test_tokenizer_json_folder_matches(tok_dir, tmp_path):
    """A folder saved by transformers (tokenizer.json next to vocab/merges) tokenises like RobertaTokenizerFast."""
    from actionvos.model.text import load_tokenizer, tokenize

    ref = load_tokenizer(tok_dir)
    ref.save_pretrained(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "tokenizer.json").is_file()
    ref2 = load_tokenizer(tmp_path / "saved")
    ours = BpeTokenizer.from_dir(tmp_path / "saved")
    ids, mask = ours(PROMPTS)
    rids, rmask = tokenize(ref2, PROMPTS)
    np.testing.assert_array_equal(ids, rids.numpy())
    np.testing.assert_array_equal(mask, rmask.numpy())
