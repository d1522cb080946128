"""The one tokenizer of every path: RoBERTa byte-level BPE on the ``tokenizers`` library (no torch, no transformers).

Built the way transformers' ``RobertaConverter`` builds ``RobertaTokenizerFast`` from ``vocab.json`` +
``merges.txt``: BPE model, ``ByteLevel(add_prefix_space=False)`` pre-tokeniser, ``RobertaProcessing``
post-processor (``<s>`` … ``</s>``), right padding to the longest prompt with pad id 1. The ids equal
``RobertaTokenizerFast(...)(prompts, padding="longest")`` (spec 3.3; ``tests/test_tokenizer.py`` checks a few
hundred prompts, non-ASCII and long ones included).

Where a tokenizer comes from (:func:`load_tokenizer`):

* an artifact of ours carries its own (``tokenizer/`` in export folders, ``tokenizer`` entry in checkpoints), so
  ``--tokenizer`` is needed only for an official checkpoint;
* a path-like argument (an existing path, or one with a separator, ``.`` or ``~``) is a folder and never falls
  back to the hub;
* anything else that looks like a hub id (``roberta-base``, ``org/name``) is fetched with ``huggingface_hub`` only
  because the user named it, with a short timeout;
* every tokenizer is checked against the model before use (:meth:`Tokenizer.check_model`): vocabulary size,
  RoBERTa's special tokens at ids 0..3, distinct prompts giving distinct ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from actionvos.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from actionvos.card import ModelCard

__all__ = ["Tokenizer", "SPECIAL_TOKENS", "TOKENIZER_DIR", "TOKENIZER_FILES", "load_tokenizer", "looks_like_hub_id"]

log = logging.getLogger(__name__)

#: RoBERTa special tokens in id order 0..4 (spec 3.3: ``<s>`` = 0, pad = 1, ``</s>`` = 2, ``<unk>`` = 3).
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
#: Folder name of the tokenizer inside an artifact folder.
TOKENIZER_DIR = "tokenizer"
#: The files a tokenizer is stored as (what roberta-base ships for its slow/fast BPE tokenizer).
TOKENIZER_FILES = ("vocab.json", "merges.txt")
#: Presets whose text encoder is roberta-base's (vocabulary of exactly 50265 tokens).
RELEASED_PRESETS = ("rf_r101_actionvos", "rf_r50_actionvos")
#: Seconds to wait for the hub when the user names a hub id.
HUB_TIMEOUT_S = 10
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_PROBES = ("box used in the action of move box", "pen used in the action of move box",
           "right hand used in the action of rotate bottle")


class Tokenizer:
    """Tokenise prompts into RoBERTa ids as numpy arrays.

    Attributes:
        files: ``{"vocab.json": text, "merges.txt": text}``: what is copied into every artifact.
        sha256: 16 hex digits of the SHA-256 over the files (the card's ``tokenizer_sha256``, part of the
            prompt-cache key).
        vocab_size: number of entries in ``vocab.json``.
        pad_id: the padding id (1 for RoBERTa).
        source: where it was loaded from (for logs and ``summary.json``).
    """

    def __init__(self, files: Mapping[str, str], source: str):
        from tokenizers import AddedToken
        from tokenizers import Tokenizer as HfTokenizer
        from tokenizers import decoders, models, pre_tokenizers, processors

        self.files = {k: files[k] for k in TOKENIZER_FILES}
        self.source = source
        try:
            vocab = json.loads(self.files["vocab.json"])
            merges = [tuple(line.split(" ")) for line in self.files["merges.txt"].splitlines()
                      if line and not line.startswith("#version")]
            if not isinstance(vocab, dict) or any(len(m) != 2 for m in merges):
                raise ValueError("vocab.json must be an object and merges.txt hold two tokens per line")
            tok = HfTokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                         end_of_word_suffix="", fuse_unk=False))
        except Exception as err:  # malformed json / merges
            raise InputError(f"cannot read the tokenizer files of {source} ({err}); copy roberta-base's vocab.json and "
                             "merges.txt again") from None
        missing = [t for t in ("<s>", "</s>", "<pad>") if t not in vocab]
        if missing:
            raise InputError(f"the tokenizer of {source} lacks RoBERTa's special tokens {missing}; use roberta-base's vocab.json")
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]),
                                                          trim_offsets=True, add_prefix_space=False)
        # RobertaTokenizerFast (vocab + merges) registers the specials as added tokens that are never split.
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False)
                                for t in SPECIAL_TOKENS if t in vocab])
        tok.no_truncation()
        self.pad_id = int(vocab["<pad>"])
        tok.enable_padding(direction="right", pad_id=self.pad_id, pad_token="<pad>")
        self._tok = tok
        self._vocab = vocab
        self.vocab_size = len(vocab)
        h = hashlib.sha256()
        for k in TOKENIZER_FILES:
            h.update(self.files[k].encode("utf-8"))
        self.sha256 = h.hexdigest()[:16]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dir(cls, directory: str | os.PathLike) -> "Tokenizer":
        """Load ``vocab.json`` + ``merges.txt`` from a local folder (never downloads).

        Raises:
            InputError: the folder does not exist or lacks the files.
        """
        path = Path(directory)
        if not path.is_dir():
            if path.exists():
                raise InputError(f"tokenizer path {str(path)!r} is a file; pass the folder that holds vocab.json and merges.txt")
            raise InputError(f"tokenizer folder {str(path)!r} does not exist; pass --tokenizer with a folder holding "
                             "roberta-base's vocab.json and merges.txt")
        missing = [f for f in TOKENIZER_FILES if not (path / f).is_file()]
        if missing and (path / "tokenizer.json").is_file():  # a folder saved by transformers: same BPE inside
            return cls(_files_from_tokenizer_json(path / "tokenizer.json"), source=str(path))
        if missing:
            raise InputError(f"tokenizer folder {str(path)!r} lacks {missing}; copy roberta-base's vocab.json and "
                             "merges.txt there")
        try:
            files = {f: (path / f).read_text(encoding="utf-8") for f in TOKENIZER_FILES}
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read the tokenizer files in {str(path)!r} ({err})") from None
        return cls(files, source=str(path))

    @classmethod
    def from_files(cls, files: Mapping[str, str], source: str) -> "Tokenizer":
        """Build from file contents (the ``tokenizer`` entry of one of our checkpoints).

        Raises:
            InputError: an entry is missing or unreadable.
        """
        if not isinstance(files, Mapping) or any(not isinstance(files.get(f), str) for f in TOKENIZER_FILES):
            raise InputError(f"{source} carries an incomplete tokenizer (needs {list(TOKENIZER_FILES)}); pass --tokenizer")
        return cls(files, source=source)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``vocab.json`` + ``merges.txt`` into ``directory`` (atomically each); returns the folder."""
        from actionvos.io_utils import atomic_write_text

        directory = Path(directory)
        for name, text in self.files.items():
            atomic_write_text(directory / name, text)
        return directory

    # ------------------------------------------------------------------ use
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

    def encode_for(self, prompts: list[str], card: "ModelCard") -> tuple[np.ndarray, np.ndarray]:
        """:meth:`__call__` plus the checks against the model: ids inside its vocabulary and no longer than its text
        encoder takes.

        Raises:
            ConfigError: an id outside the model's vocabulary (the tokenizer is not the model's).
            InputError: a prompt longer than ``card.max_text_tokens`` tokens.
        """
        ids, mask = self(prompts)
        top = int(ids.max()) if ids.size else 0
        if top >= card.vocab_size:
            raise ConfigError(f"the tokenizer produces token id {top} but the model's text encoder has only {card.vocab_size} "
                              "tokens; pass the tokenizer that belongs to this model with --tokenizer")
        if ids.shape[1] > card.max_text_tokens:
            lengths = mask.sum(1)
            longest = prompts[int(lengths.argmax())]
            raise InputError(f"prompt {longest[:60]!r}... is {ids.shape[1]} tokens long; the text encoder takes at most "
                             f"{card.max_text_tokens}; shorten the action or object names")
        return ids, mask

    def check_model(self, card: "ModelCard") -> "Tokenizer":
        """Check that this tokenizer can belong to the model of ``card``; return self.

        * the card names a tokenizer (our artifacts): the SHA-256 must match;
        * otherwise (an official checkpoint): the vocabulary size must equal the model's for the released architectures
          (:data:`RELEASED_PRESETS`), and not exceed it for the others;
        * always: ``<s>``, ``<pad>``, ``</s>``, ``<unk>`` at ids 0..3, and distinct prompts give distinct ids.

        Raises:
            ConfigError: naming what differs and the fix.
        """
        if card.tokenizer_sha256 is not None and card.tokenizer_sha256 != self.sha256:
            raise ConfigError(f"the tokenizer {self.source} (sha256 {self.sha256}) is not the one this model was trained "
                              f"with (sha256 {card.tokenizer_sha256}); drop --tokenizer to use the model's own")
        # The released architectures embed roberta-base's 50265 tokens: their tokenizer must have exactly that many
        # (a placeholder or another vocabulary would encode silently wrong); smaller presets only need the ids to fit.
        exact = card.config.name in RELEASED_PRESETS
        if card.tokenizer_sha256 is None and (self.vocab_size != card.vocab_size if exact else self.vocab_size > card.vocab_size):
            raise ConfigError(f"the tokenizer {self.source} has {self.vocab_size} tokens but the model's text encoder has "
                              f"{card.vocab_size}; pass roberta-base's vocab.json and merges.txt with --tokenizer")
        wrong = [f"{t}={self._vocab.get(t)}" for i, t in enumerate(SPECIAL_TOKENS[:4]) if self._vocab.get(t) != i]
        if wrong:
            raise ConfigError(f"the tokenizer {self.source} has RoBERTa's special tokens at the wrong ids ({', '.join(wrong)}; "
                              "expected <s>=0 <pad>=1 </s>=2 <unk>=3); it is not a RoBERTa tokenizer")
        ids, _ = self(list(_PROBES))
        if len({tuple(r) for r in ids.tolist()}) != len(_PROBES):
            raise ConfigError(f"the tokenizer {self.source} encodes different prompts identically (a placeholder "
                              "vocabulary); pass roberta-base's vocab.json and merges.txt with --tokenizer")
        return self


def _files_from_tokenizer_json(path: Path) -> dict[str, str]:
    """``vocab.json`` + ``merges.txt`` texts from a byte-level BPE ``tokenizer.json`` (its ``model`` entry).

    Raises:
        InputError: unreadable, or not a BPE tokenizer.
    """
    try:
        model = json.loads(path.read_text(encoding="utf-8"))["model"]
        if model.get("type") != "BPE":
            raise ValueError(f"model type {model.get('type')!r} is not BPE")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        return {"vocab.json": json.dumps(model["vocab"], ensure_ascii=False), "merges.txt": "\n".join(merges) + "\n"}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(f"cannot read {path} ({err}); copy roberta-base's vocab.json and merges.txt instead") from None


def looks_like_hub_id(arg: str) -> bool:
    """True when ``arg`` is not path-like and has the shape of a hub id (``name`` or ``org/name``)."""
    if not arg or arg.startswith((".", "~", "/")) or os.sep in arg.replace("/", "", 1) or "\\" in arg:
        return False
    return bool(_HUB_ID.match(arg)) and not Path(arg).exists()


def _from_hub(repo_id: str) -> Tokenizer:
    """Fetch ``vocab.json`` + ``merges.txt`` of a hub repository with a short timeout.

    Raises:
        InputError: no network, unknown id, or ``huggingface_hub`` missing; the message says to pass a folder.
    """
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(HUB_TIMEOUT_S))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(HUB_TIMEOUT_S))
    hint = (f"tokenizer {repo_id!r} is not a folder here and could not be fetched from the hub as a repository id "
            "({why}); pass --tokenizer with a local folder holding roberta-base's vocab.json and merges.txt")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise InputError(hint.format(why="huggingface_hub is not installed")) from None
    log.info("tokenizer %r is not a local folder: fetching it from the hub (timeout %d s)", repo_id, HUB_TIMEOUT_S)
    files = {}
    try:
        for name in TOKENIZER_FILES:
            files[name] = Path(hf_hub_download(repo_id, name, etag_timeout=HUB_TIMEOUT_S)).read_text(encoding="utf-8")
    except Exception as err:  # offline, unknown repo, timeout
        raise InputError(hint.format(why=type(err).__name__)) from None
    return Tokenizer(files, source=f"hub:{repo_id}")


def load_tokenizer(arg: str | os.PathLike) -> Tokenizer:
    """The tokenizer a user named with ``--tokenizer``: a folder, or (only when it looks like one) a hub id.

    A path-like argument never falls back to the hub. Check it with :meth:`Tokenizer.check_model` before use.

    Raises:
        InputError: a folder that does not exist or lacks the files; a hub id that cannot be fetched.
    """
    s = str(arg)
    if looks_like_hub_id(s):
        return _from_hub(s)
    return Tokenizer.from_dir(s)
