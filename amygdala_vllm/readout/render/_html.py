"""A self-contained HTML heat map of one text: tokens coloured by z, a concept selector.

One file, no external assets (it must open from an e-mail attachment or an
air-gapped machine). The first selection is painted on the server side, so
the page is readable with scripts off; the inline script only repaints on a
new selection and fills the hover box.

Escaping, because token text is arbitrary model vocabulary (``</script>``,
``<|im_start|>``, ``&amp;`` are all real tokens): markup text goes through
:func:`html.escape`; the data block is JSON whose ``<``, ``>`` and ``&`` are
written as ``\\u003c``-style escapes, so no string in it can close the script
element; the script writes token text only through ``textContent``.
"""

from __future__ import annotations

import html

import msgspec
import numpy as np

from ._colour import NEGATIVE, NEUTRAL, POSITIVE, UNSCORED, ink_for, z_hex, z_rgb
from ._document import _numbers
from ._view import CLIP_Z, ReadoutView, z_note

__all__ = ["render_html", "embed_json"]

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:980px;padding:0 16px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}
.meta{color:#666;font-size:13px;margin-bottom:14px}
.controls{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin-bottom:10px}
select{font-size:14px;padding:3px 6px}
.legend{display:flex;align-items:center;gap:6px;font-size:12px;color:#555}
.bar{width:180px;height:12px;border-radius:3px;border:1px solid #ccc}
#pooled{font-size:13px;color:#444}
#text{white-space:pre-wrap;word-wrap:break-word;font-size:16px;line-height:1.9;border:1px solid #e4e4e4;border-radius:6px;padding:12px 14px;margin:8px 0 6px}
#text span.t{border-radius:3px;padding:1px 0;cursor:default}
#text span.t:hover{outline:2px solid #222}
#text span.skip{text-decoration:underline dotted #888}
#text span.nl::before{content:"\\23CE";opacity:.45}
.note{font-size:12px;color:#777}
#info{font-size:13px;min-height:2.6em;margin:6px 0 18px;color:#333}
#info code{background:#f2f2f2;padding:0 4px;border-radius:3px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}
td.c{font-variant-numeric:tabular-nums}
"""

_JS = """
(function(){
const D=JSON.parse(document.getElementById("amygdala-data").textContent);
const spans=document.querySelectorAll("#text span.t");
const sel=document.getElementById("sel"), info=document.getElementById("info"), pooled=document.getElementById("pooled");
function rgb(v){
  if(v===null||Number.isNaN(v))return D.colour.neutral;
  const t=Math.min(Math.abs(v)/D.colour.clip,1), e=v>0?D.colour.positive:D.colour.negative, n=D.colour.neutral;
  return [0,1,2].map(k=>Math.round(n[k]+(e[k]-n[k])*t));
}
function css(c){return "rgb("+c.join(",")+")";}
function ink(c){return (0.2126*c[0]+0.7152*c[1]+0.0722*c[2])/255>0.45?"#000":"#fff";}
function fmt(v){return v===null?"n/a":(v>=0?"+":"")+v.toFixed(2);}
function unscored(i,l,e){const r=D.skipped_raw[i][l][e];return "not scored (raw "+(r===null?"n/a":r)+")";}
let L=0,E=0;
function paint(){
  const p=sel.value.split(","); L=+p[0]; E=+p[1];
  const f=D.scale[L][E], kind=D.calibrated[L][E]?"z":"raw";
  spans.forEach(function(s,i){
    const v=D.z[i][L][E], c=i<D.skip?D.colour.unscored:rgb(v===null?null:v*f);
    s.style.background=css(c); s.style.color=ink(c);
    s.title="#"+i+"  id "+D.token_ids[i]+"  "+(i<D.skip?unscored(i,L,E):kind+" "+fmt(v));
  });
  pooled.textContent=D.concepts[E]+" at layer "+D.layers[L]+": "+D.modes.map(function(m){return m+" "+kind+" "+fmt(D.pooled_z[m][L][E]);}).join(", ")+(D.calibrated[L][E]?"":"  (no calibration: raw dot product, colours relative to this text)");
}
function show(i){
  info.textContent="";
  const head=document.createElement("div"), code=document.createElement("code");
  code.textContent=JSON.stringify(D.tokens[i]);
  head.append("token #"+i+" ", code, "  id "+D.token_ids[i]+(i<D.skip?"  (not scored: left out of training, calibration and the mean)":""));
  const row=document.createElement("div");
  row.textContent="layer "+D.layers[L]+": "+D.concepts.map(function(c,e){return c+" "+(i<D.skip?unscored(i,L,e):fmt(D.z[i][L][e]));}).join("  ");
  info.append(head,row);
}
spans.forEach(function(s,i){s.addEventListener("mouseenter",function(){show(i);});});
sel.addEventListener("change",paint);
paint();
})();
"""


def embed_json(obj: object) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>``, ``&`` left bare.

    In JSON these characters only occur inside strings, where ``\\u003c`` etc.
    mean the same thing, so the replacement never changes the data.
    """
    data = msgspec.json.encode(obj).decode("utf-8")
    return data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _data(view: ReadoutView) -> dict:
    def rounded(a: np.ndarray) -> list:
        return _numbers(np.round(np.asarray(a, dtype=np.float64), 3))

    return {
        "tokens": view.tokens,
        "token_ids": view.token_ids,
        "layers": view.layers,
        "concepts": view.concepts,
        "calibrated": view.calibrated.tolist(),
        "scale": view.shade_scale().tolist(),
        "skip": view.skip_first_tokens,
        "z": rounded(view.z) if view.tokens else [],  # null where not scored (before skip)
        "skipped_raw": rounded(view.raw[: view.skip_first_tokens]) if view.tokens else [],
        "modes": list(view.pooled_z),  # the order to show them in (a JSON object's order is not a contract)
        "pooled_z": {name: rounded(values) for name, values in view.pooled_z.items()},
        "colour": {"clip": CLIP_Z, "neutral": NEUTRAL, "negative": NEGATIVE, "positive": POSITIVE,
                   "unscored": UNSCORED},
    }


def _spans(view: ReadoutView) -> str:
    shade = view.shade()
    out = []
    for t, token in enumerate(view.tokens):
        classes = ["t"]
        if t < view.skip_first_tokens:
            classes.append("skip")
        if "\n" in token:
            classes.append("nl")
        value = float(shade[t, 0, 0]) if view.concepts and view.layers else float("nan")
        rgb = z_rgb(value) if view.scored(t) else UNSCORED
        style = f"background:#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x};color:{ink_for(rgb)}"
        out.append(f'<span class="{" ".join(classes)}" style="{style}">{html.escape(token)}</span>')
    return "".join(out)


def _options(view: ReadoutView) -> str:
    opts = []
    for i, layer in enumerate(view.layers):
        for j, concept in enumerate(view.concepts):
            label = concept if len(view.layers) == 1 else f"{concept} · layer {layer}"
            if not view.calibrated[i, j]:
                label += " (raw)"
            opts.append(f'<option value="{i},{j}">{html.escape(label)}</option>')
    return "".join(opts)


def _summary(view: ReadoutView) -> str:
    scale = view.shade_scale()
    head = "".join(f"<th>L{layer} {html.escape(name)}</th>" for layer in view.layers for name in view.pooled_z)
    rows = []
    for j, concept in enumerate(view.concepts):
        cells = []
        for i in range(len(view.layers)):
            for value in (float(values[i, j]) for values in view.pooled_z.values()):
                rgb = z_rgb(value * scale[i, j])
                shown = f"{value:+.2f}" if view.calibrated[i, j] else f"{value:+.3g} raw"
                cells.append(
                    f'<td class="c" style="background:{z_hex(value * scale[i, j])};color:{ink_for(rgb)}">{shown}</td>'
                )
        rows.append(f"<tr><td>{html.escape(concept)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>concept</th>{head}</tr>{''.join(rows)}</table>"


def _note(view: ReadoutView) -> str:
    note = z_note(view) + "; midpoints between train positives and negatives."
    if view.skip_first_tokens:
        note += (f" Grey, dotted: the first {view.skip_first_tokens} position(s), not scored (left out of training, "
                 "calibration and the mean; hover for the raw value).")
    return html.escape(note + " Hover a token for its scores.")


def render_html(view: ReadoutView, *, title: str = "amygdala readout") -> str:
    """The whole page as a string (the CLI writes it atomically)."""
    grad = f"linear-gradient(90deg,{z_hex(-CLIP_Z)},{z_hex(0.0)},{z_hex(CLIP_Z)})"
    meta = [f"model {view.model}", f"{len(view.tokens)} tokens",
            f"layer{'s' if len(view.layers) > 1 else ''} {', '.join(map(str, view.layers))}"]
    if view.agreement is not None:
        meta.append(f"agreement max |diff| {view.agreement:.2g}")
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div class="meta">{html.escape(" · ".join(meta))}</div>
<div class="controls">
<label>concept <select id="sel">{_options(view)}</select></label>
<span class="legend">z −{CLIP_Z:g} <span class="bar" style="background:{grad}"></span> +{CLIP_Z:g}</span>
</div>
<div id="pooled"></div>
<div id="text">{_spans(view)}</div>
<div class="note">{_note(view)}</div>
<div id="info"></div>
{_summary(view)}
<script type="application/json" id="amygdala-data">{embed_json(_data(view))}</script>
<script>{_JS}</script>
</body></html>
"""
    return body
