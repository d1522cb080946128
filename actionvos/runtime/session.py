"""The streaming session: the causal driver of the one pipeline under its runtime name.

``StreamSession(backend, config, tokenizer)`` → :meth:`~StreamSession.set_prompts` (action + objects, or explicit
prompt strings) → :meth:`~StreamSession.step` once per frame → :class:`FrameResult`. The implementation (and the
official clip rule beside it) is :mod:`actionvos.pipeline.drivers`; this module only gives the streaming names.
"""

from __future__ import annotations

from actionvos.pipeline.drivers import STEP_STAGES, CausalDriver, FrameResult, ObjectResult, StreamConfig

__all__ = ["StreamConfig", "ObjectResult", "FrameResult", "StreamSession", "STEP_STAGES"]

#: The per-stream session object (Cutie's ``InferenceCore`` role): the causal driver.
StreamSession = CausalDriver
