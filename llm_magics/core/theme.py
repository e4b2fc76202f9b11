"""The views' colours, as JupyterLab's theme variables (``--jp-*``): every view reads in the light
and the dark theme, and follows a switch between them without a redraw.

Text, muted text, borders and backgrounds are the theme's own. A hue (success, error, warn, brand,
info) is never used as it is for text or on a background, where it would suit one theme only:
``ink`` pulls it 30% toward the theme's text colour (darker in the light theme, lighter in the
dark), ``tint`` mixes a little of it into the page colour. Either way text keeps a WCAG contrast
above 4.5 in both themes (tests/test_browser_theme.py measures it). Each variable falls back to the
light theme's value, for a page outside JupyterLab.
"""

from __future__ import annotations

from typing import Literal

Hue = Literal["success", "error", "warn", "brand", "info", "purple", "olive"]

TEXT = "var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87))"
STRONG = "var(--jp-ui-font-color0, #000)"  # the hover labels, the text ink pulls toward
MUTED = "var(--jp-ui-font-color2, rgba(0, 0, 0, 0.54))"  # tick labels, notes (4.6:1 on the page)
FAINT = "var(--jp-ui-font-color3, rgba(0, 0, 0, 0.38))"  # what is disabled
PAGE = "var(--jp-layout-color0, #fff)"
RAISED = "var(--jp-layout-color2, #eee)"  # a table's head, a hovered row
RAISED_MORE = "var(--jp-layout-color3, #bdbdbd)"
BORDER = "var(--jp-border-color2, #e0e0e0)"
FRAME = "var(--jp-border-color1, #bdbdbd)"

_BASE = {
    "success": "var(--jp-success-color1, #388e3c)",
    "error": "var(--jp-error-color1, #d32f2f)",
    "warn": "var(--jp-warn-color1, #f57c00)",
    "brand": "var(--jp-brand-color1, #1976d2)",
    "info": "var(--jp-info-color1, #0097a7)",
}
# the theme has no purple or olive: halfway between two of its hues
_MIXED = {"purple": ("brand", "error"), "olive": ("warn", "success")}
PALETTE: tuple[Hue, ...] = ("brand", "warn", "success", "error", "purple", "info", "olive")


def hue(name: Hue) -> str:
    """The theme's colour of that name, as it is: for a bar or a border, never under text."""
    if name in _MIXED:
        first, second = _MIXED[name]
        return f"color-mix(in srgb, {_BASE[first]}, {_BASE[second]})"
    return _BASE[name]


def ink(name: Hue) -> str:
    """Text or a line in that hue, readable on the page in either theme."""
    return f"color-mix(in srgb, {hue(name)} 70%, {STRONG})"


def tint(name: Hue, share: int = 20) -> str:
    """A background in that hue, under which the theme's text stays readable."""
    return f"color-mix(in srgb, {hue(name)} {share}%, {PAGE})"
