"""Moved to :mod:`actionvos.pipeline.frames`; kept for imports of version 0.1."""
from actionvos.pipeline.frames import merge_labels_np, resize_frame, sigmoid, upsample_mask_logits  # noqa: F401
