"""One diverging colour scale for every renderer, so a colour means the same z everywhere.

Blue for below the midpoint, near-white at it, red above, saturating at
``|z| = CLIP_Z``. A diverging scale (not a rainbow) because the sign is the
message: the midpoint is where positives and negatives meet. The HTML page
repeats this formula in its script; ``_html.py`` keeps the two in step.
"""

from __future__ import annotations

import math

from ._view import CLIP_Z

__all__ = ["NEUTRAL", "NEGATIVE", "POSITIVE", "UNSCORED", "z_rgb", "z_hex", "ink_for"]

NEUTRAL = (246, 246, 246)
#: Positions before ``skip_first_tokens`` have no z (not scored): grey, outside the scale.
UNSCORED = (190, 190, 190)
NEGATIVE = (49, 104, 196)
POSITIVE = (196, 38, 46)


def z_rgb(z: float, clip: float = CLIP_Z) -> tuple[int, int, int]:
    """Background colour for ``z``; NaN gets the neutral colour (nothing to show)."""
    if not math.isfinite(z):
        if math.isnan(z):
            return NEUTRAL
        z = math.copysign(clip, z)
    t = min(abs(z) / clip, 1.0)
    end = POSITIVE if z > 0 else NEGATIVE
    return tuple(round(n + (e - n) * t) for n, e in zip(NEUTRAL, end))  # type: ignore[return-value]


def z_hex(z: float, clip: float = CLIP_Z) -> str:
    """``#rrggbb`` for ``z``."""
    return "#{:02x}{:02x}{:02x}".format(*z_rgb(z, clip))


def ink_for(rgb: tuple[int, int, int]) -> str:
    """Black or white text, whichever reads on ``rgb`` (relative luminance > 0.45 -> black)."""
    r, g, b = (c / 255 for c in rgb)
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "#ffffff"
