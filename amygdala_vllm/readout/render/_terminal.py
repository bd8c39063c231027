"""Rich renderables for the terminal: a per-token table and a colour strip per concept.

These build rich objects and never print, so the CLI decides where they go
(stdout, or stderr when ``--json`` owns stdout). Token text is wrapped in
``rich.text.Text``, never interpolated into markup, so a token such as
``[bold]`` is shown as typed.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from ._colour import UNSCORED, ink_for, z_rgb
from ._view import CLIP_Z, ReadoutView, z_note

__all__ = ["visible_token", "score_table", "colour_strip", "legend"]

_WHITESPACE = {"\n": "⏎", "\r": "␍", "\t": "⇥"}


def visible_token(token: str, *, spaces: bool = True) -> str:
    """The token with line breaks and tabs drawn (and spaces as ``·`` when ``spaces``).

    A token is often just ``" "`` or ``"\\n"``; shown as-is it would be an
    empty cell or break the layout.
    """
    out = "".join(_WHITESPACE.get(ch, ch) for ch in token)
    if spaces:
        out = out.replace(" ", "·")
    return out if out else "∅"


def _style(value: float) -> Style:
    rgb = z_rgb(value)
    return Style(bgcolor=f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", color=ink_for(rgb))


#: Cells of positions that are not scored (before ``skip_first_tokens``): grey, raw value only.
_UNSCORED = Style(bgcolor=f"rgb({UNSCORED[0]},{UNSCORED[1]},{UNSCORED[2]})", color=ink_for(UNSCORED))


def _column_label(view: ReadoutView, i: int, j: int) -> str:
    name = view.concepts[j]
    if len(view.layers) > 1:
        name += f"\nL{view.layers[i]}"
    if not view.calibrated[i, j]:
        name += "\n(raw)"
    return name


def _columns(view: ReadoutView) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(view.layers)) for j in range(len(view.concepts))]


def score_table(view: ReadoutView, *, title: str | None = None) -> Table:
    """One row per token (position, token, a z cell per concept and layer), then one per pooling mode.

    Positions before ``skip_first_tokens`` are not scored: training,
    calibration and the pooled mean (and max) leave them out (position 0 is an
    attention sink with huge norms), so they show their raw value on grey.
    """
    layers = ", ".join(str(layer) for layer in view.layers)
    table = Table(
        title=title or f"z-scores per token, layer {layers}",
        caption=z_note(view) + ("; (raw): uncalibrated" if not view.calibrated.all() else "")
        + (f"; grey: position(s) < {view.skip_first_tokens} not scored (raw shown)" if view.skip_first_tokens else ""),
        show_lines=False,
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("token", no_wrap=False, max_width=32)
    cols = _columns(view)
    for i, j in cols:
        table.add_column(_column_label(view, i, j), justify="right")
    shade = view.shade()
    for t, token in enumerate(view.tokens):
        skipped = t < view.skip_first_tokens
        cells: list[RenderableType] = [
            Text(str(t)),
            Text(visible_token(token), style="dim" if skipped else ""),
        ]
        for i, j in cols:
            if skipped:
                cells.append(Text(f"raw {view.raw[t, i, j]:+.4g}", style=_UNSCORED))
            else:
                cells.append(Text(f"{view.z[t, i, j]:+.2f}", style=_style(float(shade[t, i, j]))))
        table.add_row(*cells, end_section=t == len(view.tokens) - 1)
    scale = view.shade_scale()
    for label, values in view.pooled_z.items():
        cells = [Text(""), Text(label, style="bold")]
        for i, j in cols:
            cells.append(Text(f"{values[i, j]:+.2f}", style=_style(float(values[i, j] * scale[i, j]))))
        table.add_row(*cells)
    return table


def legend() -> Text:
    """A short key: the colour of z = -3 ... +3."""
    text = Text("z ")
    for z in (-CLIP_Z, -2.0, -1.0, 0.0, 1.0, 2.0, CLIP_Z):
        text.append(f" {z:+.0f} ", style=_style(z))
    return text


def colour_strip(view: ReadoutView) -> Group:
    """The text once per (layer, concept), each token on the colour of its z.

    Line breaks in the text are drawn as ``⏎`` so each strip stays one
    paragraph; the terminal wraps long ones.
    """
    shade = view.shade()
    parts: list[RenderableType] = [legend()]
    for i, j in _columns(view):
        head = Text(view.concepts[j], style="bold")
        if len(view.layers) > 1:
            head.append(f" L{view.layers[i]}")
        kind = "z" if view.calibrated[i, j] else "raw"
        head.append("".join(f"  {name} {kind} {values[i, j]:+.2f}" for name, values in view.pooled_z.items()),
                    style="dim")
        strip = Text()
        for t, token in enumerate(view.tokens):
            style = _style(float(shade[t, i, j])) if view.scored(t) else _UNSCORED
            strip.append(visible_token(token, spaces=False), style=style)
        parts += [Text(""), head, strip]
    return Group(*parts)
