"""RoBERTa byte-level BPE tokenisation without torch or transformers (for the edge runtime).

Built directly on the ``tokenizers`` library the way transformers' ``RobertaConverter`` builds
``RobertaTokenizerFast`` from ``vocab.json`` + ``merges.txt``: BPE model, ``ByteLevel(add_prefix_space=False)``
pre-tokeniser, ``RobertaProcessing`` post-processor (``<s>`` … ``</s>``), right padding to the longest prompt
with pad id 1. The ids equal ``RobertaTokenizerFast.batch_encode_plus(padding="longest")`` (spec 3.3; tested in
``tests/runtime/test_tokenizer.py``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from actionvos.errors import InputError

__all__ = ["BpeTokenizer", "SPECIAL_TOKENS"]

#: RoBERTa special tokens in id order 0..4 (spec 3.3: ``<s>`` = 0, pad = 1, ``</s>`` = 2).
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class BpeTokenizer:
    """Tokenise prompts into RoBERTa ids as numpy arrays.

    Attributes:
        tokenizer_id: 16 hex digits of the SHA-256 of the vocabulary files; part of the prompt-cache key.
        pad_id: the padding id (1 for RoBERTa).
    """

    def __init__(self, tokenizer, tokenizer_id: str, pad_id: int):
        self._tok = tokenizer
        self.tokenizer_id = tokenizer_id
        self.pad_id = pad_id

    @classmethod
    def from_dir(cls, directory: str | Path) -> "BpeTokenizer":
        """Load ``tokenizer.json`` when present (as ``RobertaTokenizerFast`` does), else ``vocab.json`` + ``merges.txt``.

        Raises:
            InputError: the path is not a local folder with those files (the runtime never downloads).
        """
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

        path = Path(directory)
        if not path.is_dir():
            raise InputError(f"tokenizer folder {str(path)!r} does not exist; pass --tokenizer with a folder holding "
                             "roberta-base's vocab.json and merges.txt")
        vocab, merges, tok_json = path / "vocab.json", path / "merges.txt", path / "tokenizer.json"
        if tok_json.is_file():  # what RobertaTokenizerFast.from_pretrained loads first when present
            files = [tok_json]
            try:
                tok = Tokenizer.from_file(str(tok_json))
            except Exception as err:
                raise InputError(f"cannot read {tok_json} ({err}); copy roberta-base's tokenizer files again") from None
            pad = tok.token_to_id("<pad>")
            if pad is None:
                raise InputError(f"{tok_json} has no <pad> token; it is not a RoBERTa tokenizer")
            pad_id = pad
        elif vocab.is_file() and merges.is_file():
            files = [vocab, merges]
            try:
                tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges), dropout=None, continuing_subword_prefix="",
                                                     end_of_word_suffix="", fuse_unk=False))
            except Exception as err:  # malformed json / merges
                raise InputError(f"cannot read the BPE files in {str(path)!r} ({err}); copy roberta-base's vocab.json and merges.txt") from None
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            vocab_map = json.loads(vocab.read_text(encoding="utf-8"))
            missing = [t for t in ("<s>", "</s>", "<pad>") if t not in vocab_map]
            if missing:
                raise InputError(f"{vocab} lacks the RoBERTa special tokens {missing}; use roberta-base's vocab.json")
            tok.post_processor = processors.RobertaProcessing(
                ("</s>", vocab_map["</s>"]), ("<s>", vocab_map["<s>"]), trim_offsets=True, add_prefix_space=False)
            # RobertaTokenizerFast (transformers 5, vocab+merges only) registers the specials as plain added tokens.
            specials = [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in SPECIAL_TOKENS if t in vocab_map]
            tok.add_special_tokens(specials)
            pad_id = vocab_map["<pad>"]
        else:
            raise InputError(f"tokenizer folder {str(path)!r} has neither vocab.json+merges.txt nor tokenizer.json; "
                             "copy roberta-base's tokenizer files there")
        tok.no_truncation()
        tok.enable_padding(direction="right", pad_id=pad_id, pad_token="<pad>")
        h = hashlib.sha256()
        for f in files:
            h.update(f.read_bytes())
        return cls(tok, h.hexdigest()[:16], pad_id)

    def __call__(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise prompts verbatim (no lowercasing, no max length; spec 3.1/3.3).

        Returns:
            ``input_ids [P, L]`` int64 (``<s>`` first, ``</s>`` last, pad = 1) and ``attention_mask [P, L]`` int64
            (1 = token, 0 = padding), padded to the longest prompt.
        Raises:
            InputError: empty prompt list or a blank prompt.
        """
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise InputError("every prompt must be a non-empty string")
        enc = self._tok.encode_batch(list(prompts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask
