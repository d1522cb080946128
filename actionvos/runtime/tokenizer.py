"""Moved to :mod:`actionvos.tokenizer` (the one tokenizer of every path); kept for imports of version 0.1."""
from actionvos.tokenizer import SPECIAL_TOKENS, Tokenizer as BpeTokenizer  # noqa: F401
