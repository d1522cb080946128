"""The one overlay renderer: DAVIS palette, mask blending, per-object legend and extra text lines.

Both the file overlay (:class:`actionvos.inference.writers.OverlayWriter`) and the live HUD
(:func:`actionvos.runtime.hud.render_frame`) draw through :func:`render_overlay`, so they look the same.

* :func:`davis_palette` / :data:`PALETTE` — the DAVIS / PASCAL VOC palette (the only copy in the package).
* :func:`object_colour` — the RGB colour of object ``i`` (palette entry ``i + 1``), also used by the plots.
* :func:`blend_masks` — masks blended into the frame in their palette colours, with a thin outline.
* :func:`legend_text` — ``"box 0.716 ≥ 0.62 ✓"`` / ``"pen 0.301 < 0.62 ✗"``.
* :func:`render_overlay` — blend + legend panel (top left) + optional header lines (HUD) and footer lines.

Text is drawn with PIL and DejaVu Sans (shipped with matplotlib), because OpenCV's Hershey fonts have no
``≥`` / ``✓`` / ``✗`` glyphs. Only the small legend region is converted to a PIL image, so a frame costs about
a millisecond more than the blend itself.

The gate threshold is always an argument: it is a fact of the model card (:attr:`actionvos.card.ModelCard.thresholds`:
the paper's value for the official model, the demo's own for the demo), never a default of the renderer.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "davis_palette",
    "PALETTE",
    "object_colour",
    "blend_masks",
    "format_threshold",
    "legend_text",
    "LegendRow",
    "render_overlay",
]


def davis_palette(n: int = 256) -> np.ndarray:
    """The DAVIS / PASCAL VOC palette as ``[n, 3]`` uint8 RGB (bit-interleaved label bits).

    0 is black, 1 (128,0,0), 2 (0,128,0), 3 (128,128,0), 4 (0,0,128), ... as in the ActionVOS
    annotation PNGs (spec 3.9 step 5). ``davis_palette().reshape(-1).tolist()`` is the 768-entry list
    that ``PIL.Image.putpalette`` takes.
    """
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


PALETTE: np.ndarray = davis_palette()
"""``[256, 3]`` uint8 RGB, read-only; label ``k`` (object ``k - 1``) is drawn in ``PALETTE[k]``."""
PALETTE.setflags(write=False)


def object_colour(i: int) -> tuple[int, int, int]:
    """RGB colour (0..255 ints) of object ``i`` (0-based prompt index), i.e. palette entry ``i + 1``."""
    r, g, b = PALETTE[(i + 1) % 256]
    return int(r), int(g), int(b)


def blend_masks(frame_rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5, outline: bool = True) -> np.ndarray:
    """Blend each object's mask into the frame in its palette colour.

    Args:
        frame_rgb: ``[H, W, 3]`` uint8 RGB frame.
        labels: ``[H, W]`` uint8 merged labels (0 background, ``i + 1`` object ``i``).
        alpha: mask opacity in [0, 1]; inside a mask ``out = (1 - alpha) * frame + alpha * colour``.
        outline: also draw a 1-pixel border of each mask in a brightened version of its colour.
    Returns:
        ``[H, W, 3]`` uint8 RGB, a new array; background pixels are unchanged.
    Raises:
        ValueError: on shapes or dtypes other than the above, or ``alpha`` outside [0, 1].
    """
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
        raise ValueError(f"frame must be [H, W, 3] uint8 RGB, got {frame_rgb.shape} {frame_rgb.dtype}")
    if labels.shape != frame_rgb.shape[:2] or labels.dtype != np.uint8:
        raise ValueError(f"labels must be [H, W] = {frame_rgb.shape[:2]} uint8, got {labels.shape} {labels.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = frame_rgb.copy()
    mask = labels > 0
    if not mask.any():
        return out
    colours = PALETTE[labels[mask]].astype(np.float32)
    out[mask] = np.clip((1.0 - alpha) * frame_rgb[mask].astype(np.float32) + alpha * colours + 0.5, 0, 255).astype(np.uint8)
    if outline:
        edge = np.zeros_like(mask)
        edge[1:, :] |= labels[1:, :] != labels[:-1, :]
        edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
        edge &= mask
        bright = np.minimum(PALETTE.astype(np.int32) + 96, 255).astype(np.uint8)
        out[edge] = bright[labels[edge]]
    return out


def format_threshold(threshold: float) -> str:
    """The threshold with up to three decimals and no trailing zeros: 0.75 → ``"0.75"``, 0.615 → ``"0.615"``."""
    text = f"{threshold:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def legend_text(name: str, positive_prob: float, passed: bool, threshold: float | None) -> str:
    """One legend line: ``"box 0.716 ≥ 0.62 ✓"`` (passed) or ``"pen 0.301 < 0.62 ✗"`` (gated).

    The comparison sign and the mark follow ``passed`` (the decision the pipeline made), not a recomputation.
    ``threshold=None`` (not known to the caller) leaves the comparison out: ``"box 0.716 ✓"``.
    """
    mark = "✓" if passed else "✗"
    if threshold is None:
        return f"{name} {positive_prob:.3f} {mark}"
    return f"{name} {positive_prob:.3f} {'≥' if passed else '<'} {format_threshold(threshold)} {mark}"


@dataclass(frozen=True)
class LegendRow:
    """One object of the legend: ``name``, positive probability in [0, 1], gate decision, 0-based ``index``
    (its colour is :func:`object_colour` ``(index)``)."""

    name: str
    positive_prob: float
    passed: bool
    index: int


# ---------------------------------------------------------------------------------------------------- fonts
_FONT_FILES = {"regular": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}


@functools.lru_cache(maxsize=None)
def _font_path(weight: str) -> str | None:
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _FONT_FILES[weight]
        if path.is_file():
            return str(path)
        from matplotlib import font_manager

        return font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight=weight), fallback_to_default=True)
    except Exception:  # pragma: no cover - matplotlib is a dependency; keep rendering without it
        return None


@functools.lru_cache(maxsize=64)
def _font(size: int, weight: str = "regular"):
    from PIL import ImageFont

    path = _font_path(weight)
    if path is not None:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)  # pragma: no cover - no DejaVu: ✓/✗/≥ may show as boxes


def _text_w(font, text: str) -> int:
    return int(math.ceil(font.getlength(text)))


def _fit(font, text: str, width: int) -> str:
    """``text`` cut with an ellipsis so it is at most ``width`` pixels wide."""
    if _text_w(font, text) <= width:
        return text
    while text and _text_w(font, text + "…") > width:
        text = text[:-1]
    return text + "…"


_WHITE = (255, 255, 255, 255)
_GREY = (200, 205, 210, 255)
_PASS = (110, 230, 120, 255)
_FAIL = (255, 110, 100, 255)
_PANEL = (16, 18, 22, 178)


def _composite(out: np.ndarray, panel, x: int, y: int) -> None:
    """Alpha-composite the RGBA PIL image ``panel`` onto ``out`` ([H, W, 3] uint8, in place) at (x, y), clipped."""
    rgba = np.asarray(panel)
    h = min(rgba.shape[0], out.shape[0] - y)
    w = min(rgba.shape[1], out.shape[1] - x)
    if h <= 0 or w <= 0:
        return
    rgba = rgba[:h, :w]
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    region = out[y : y + h, x : x + w].astype(np.float32)
    out[y : y + h, x : x + w] = np.clip(region * (1.0 - a) + rgba[..., :3].astype(np.float32) * a + 0.5, 0, 255).astype(np.uint8)


def _font_size(h: int, w: int) -> int:
    return int(np.clip(round(min(h, w * 0.75) / 30), 10, 30))


def render_overlay(
    frame_rgb: np.ndarray,
    labels: np.ndarray,
    rows: Sequence[LegendRow],
    threshold: float | None,
    *,
    alpha: float = 0.5,
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
) -> np.ndarray:
    """The overlay image: masks blended in, a legend panel at the top left, optional header / footer text.

    Legend rows read ``■ box  0.716 ≥ 0.62 ✓`` with the swatch in the object's palette colour, the numbers in
    aligned columns, ✓ in green and ✗ in red. ``header`` lines (the live HUD: FPS, latency, dropped frames) are
    drawn above the legend in the same panel; ``footer`` lines (the prompt editor, status messages) in a bar
    along the bottom edge. Rows that do not fit in the frame's height are left out; long names are shortened
    with "…".

    Args:
        frame_rgb: ``[H, W, 3]`` uint8 RGB frame.
        labels: ``[H, W]`` uint8 merged labels (0 background, ``i + 1`` object ``i``).
        rows: the legend, one :class:`LegendRow` per object (in prompt order).
        threshold: the positive-gate threshold of the model card in [0, 1]; required (no default) so the
            picture never shows a threshold the model did not use; ``None`` only when the caller truly does not
            know it, then the legend shows probability and decision without the comparison.
        alpha: mask opacity in [0, 1].
        header: extra text lines above the legend.
        footer: extra text lines in a bar at the bottom.
    Returns:
        ``[H, W, 3]`` uint8 RGB, a new array.
    Raises:
        ValueError: bad shapes / dtypes / alpha (see :func:`blend_masks`) or a threshold outside [0, 1].
    """
    from PIL import Image, ImageDraw

    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    out = blend_masks(frame_rgb, labels, alpha)
    h, w = out.shape[:2]
    size = _font_size(h, w)
    font, bold, small = _font(size), _font(size, "bold"), _font(max(9, round(size * 0.85)))
    pad, gap = max(3, size // 3), max(4, size // 2)
    line_h = round(size * 1.35)
    hdr_h = round(small.size * 1.35)
    max_w = w - 2 * 4  # the panel keeps a 4-pixel margin from the frame's edges

    panel_rows: list[tuple] = []
    if rows or header:
        swatch = round(size * 0.8)
        prob_w = _text_w(font, "0.000")
        thr_txt = None if threshold is None else format_threshold(float(threshold))
        cmp_w = 0 if thr_txt is None else _text_w(font, "≥ ") + _text_w(font, thr_txt)
        mark_w = max(_text_w(bold, "✓"), _text_w(bold, "✗"))
        fixed = pad + swatch + gap + gap + prob_w + (gap + cmp_w if cmp_w else 0) + gap + mark_w + pad
        name_w = max((_text_w(bold, r.name) for r in rows), default=0)
        name_w = max(0, min(name_w, max_w - fixed))
        header = [_fit(small, t, max_w - 2 * pad) for t in header]
        legend_w = fixed + name_w if rows else 0
        panel_w = min(max_w, max([legend_w] + [_text_w(small, t) + 2 * pad for t in header]))
        n_hdr = len(header)
        y_end = h - 4 - (len(footer) * hdr_h + 2 * pad if footer else 0)
        panel_h = pad + n_hdr * hdr_h + (len(rows) * line_h) + pad
        while panel_h > y_end - 4 and (rows or n_hdr):  # leave out rows that do not fit
            if rows:
                rows = rows[:-1]
                panel_h -= line_h
            else:
                n_hdr -= 1
                panel_h -= hdr_h
        if panel_h > 2 * pad and panel_w > 0:
            panel = Image.new("RGBA", (panel_w, panel_h), (0, 0, 0, 0))
            d = ImageDraw.Draw(panel)
            d.rounded_rectangle((0, 0, panel_w - 1, panel_h - 1), radius=max(2, size // 3), fill=_PANEL)
            y = pad
            for text in header[:n_hdr]:
                d.text((pad, y + hdr_h / 2), text, font=small, fill=_GREY, anchor="lm")
                y += hdr_h
            for r in rows:
                cy = y + line_h / 2
                x = pad
                col = object_colour(r.index)
                d.rounded_rectangle((x, cy - swatch / 2, x + swatch, cy + swatch / 2), radius=max(1, swatch // 5),
                                    fill=col + (255,), outline=(255, 255, 255, 200))
                x += swatch + gap
                d.text((x, cy), _fit(bold, r.name, name_w), font=bold, fill=_WHITE, anchor="lm")
                x += name_w + gap
                d.text((x + prob_w, cy), f"{float(r.positive_prob):.3f}", font=font, fill=_WHITE, anchor="rm")
                x += prob_w + gap
                if thr_txt is not None:
                    d.text((x, cy), ("≥ " if r.passed else "< ") + thr_txt, font=font, fill=_GREY, anchor="lm")
                    x += cmp_w + gap
                d.text((x, cy), "✓" if r.passed else "✗", font=bold, fill=_PASS if r.passed else _FAIL, anchor="lm")
                y += line_h
            _composite(out, panel, 4, 4)
    if footer:
        bar_h = len(footer) * hdr_h + 2 * pad
        bar = Image.new("RGBA", (w, bar_h), _PANEL)
        d = ImageDraw.Draw(bar)
        for k, text in enumerate(footer):
            d.text((pad + 4, pad + k * hdr_h + hdr_h / 2), _fit(small, text, w - 2 * pad - 8), font=small, fill=_WHITE,
                   anchor="lm")
        _composite(out, bar, 0, max(0, h - bar_h))
    return out
