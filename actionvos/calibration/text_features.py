"""FP32 text features of the calibration prompt sets (what the runtime caches and feeds the segmenter)."""

from __future__ import annotations

import numpy as np

from actionvos.calibration.common import GraphDir, make_session

__all__ = ["TextFeatureEncoder"]


class TextFeatureEncoder:
    """FP32 text features from ``text_encoder.onnx`` (ONNX Runtime CPU) or the PyTorch model.

    Call with ``ids, mask`` (``[P, L]`` int64) → ``text_word [P, L, d]`` float32, ``text_mask [P, L]`` bool
    (True = padding), ``text_sentence [P, d]`` float32. ``source`` names what produced them (stored in the file).
    """

    def __init__(self, graphs: GraphDir | None, model=None, threads: int = 2):
        self.model = model
        self.session = None
        if graphs is not None:
            self.session = make_session(graphs.text, threads)
            self.source = f"{graphs.text.name} (onnxruntime-cpu, fp32)"
        else:
            self.source = "PyTorch model.encode_text (cpu, fp32)"

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.session is not None:
            word, tmask, sent = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            return word.astype(np.float32), tmask.astype(bool), sent.astype(np.float32)
        import torch

        with torch.no_grad():
            t = self.model.encode_text(torch.from_numpy(ids), torch.from_numpy(mask))
        return t.word.numpy().astype(np.float32), t.mask.numpy().astype(bool), t.sentence.numpy().astype(np.float32)
