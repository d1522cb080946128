"""Moved to :mod:`actionvos.prompts` (kept for imports of version 0.1)."""
from actionvos.prompts import *  # noqa: F401,F403
from actionvos.prompts import Prompt, build_prompts, check_template, parse_objects, prompts_from_expressions, MAX_OBJECTS  # noqa: F401
