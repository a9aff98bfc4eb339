"""The dashboard page: one HTML document for both the live server and the static report.

The static report embeds plotly.js, the payload and the figures, so it opens
offline; the live page loads the same script and polls ``data.json``.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from plotly.utils import PlotlyJSONEncoder

__all__ = ["render_page", "plotly_js", "page_script", "dumps"]

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>igc-nas: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
.grid {{ display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }}
/* Without latency the two rows of old: params | MACs, 3-D | details. With latency figures the
   accuracy-latency plot goes beside the MACs one, where the two fronts can be compared. */
.plots {{ row-gap: 0; grid-template-areas: "params macs" "p3d details"; }}
.plots.with-latency {{ row-gap: 8px; grid-template-areas: "macs latency" "params p3d" "details details"; }}
#pareto-params {{ grid-area: params; }} #pareto-macs {{ grid-area: macs; }} #pareto-3d {{ grid-area: p3d; }}
#details {{ grid-area: details; }} #pareto-latency {{ grid-area: latency; display: none; }}
.plots.with-latency #pareto-latency {{ display: block; }}
.controls {{ display: flex; gap: 18px; align-items: center; flex-wrap: wrap; margin: 8px 0;
             padding: 8px; background: #f5f5f5; border-radius: 6px; }}
.controls input {{ width: 90px; }}
#pick {{ font-weight: 600; margin: 6px 0; }}
#error {{ color: #b00; font-weight: 600; }}
table {{ border-collapse: collapse; font-size: 13px; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: left; }}
th {{ cursor: pointer; background: #fafafa; }}
tr.pick td {{ background: #fff3cd; }} tr.sel td {{ outline: 2px solid #1f77b4; }}
tbody tr {{ cursor: pointer; }}
.note {{ color: #666; font-size: 12px; }}
</style>
{prefetch}{plotly}
</head><body>
<h1>igc-nas: {title}</h1>
<div id="summary" class="note"></div>
<div id="error"></div>
<div class="controls">
  <b>Budget</b> (human units: 250k, 1.5M)
  <label>max params <input id="max-params" placeholder="any"></label>
  <label>max MACs <input id="max-macs" placeholder="any"></label>
  <label id="latency-control"><span id="latency-label">max latency (ms)</span>
    <input id="max-latency" placeholder="any"></label>
  <span class="note">The shaded region is over budget; the star is the most accurate trial on the front within it
  (the model <code>igc-nas pick</code> exports). MACs are multiply-accumulates; FLOPs = 2 x MACs.</span>
</div>
<div id="pick" data-trial=""></div>
<div id="plots" class="grid plots"><div id="pareto-params"></div><div id="pareto-macs"></div>
<div id="pareto-latency"></div><div id="pareto-3d"></div><div id="details">
  <h3 id="details-title">Select a trial (table row or point)</h3>
  <div id="curve"></div><div id="conditions"></div>
</div></div>
<div id="drawing"></div>
<h3>Pareto front</h3>
<table id="front-table"><thead><tr><th data-key="number">trial</th><th data-key="val_accuracy">val acc</th>
<th data-key="params">params</th><th data-key="macs">MACs</th><th data-key="latency_ms">latency ms</th>
<th data-key="latency_measured_ms" id="measured-col" style="display:none">measured ms</th>
<th data-key="structure">architecture (family, blocks | C:L K1 K per stage)</th></tr></thead><tbody></tbody></table>
<div class="grid"><div id="hv-history"></div><div id="acc-history"></div></div>
{data}
<script>{script}</script>
</body></html>
"""


def dumps(data: Any) -> str:
    """JSON safe to embed in a <script> element."""
    return json.dumps(data, cls=PlotlyJSONEncoder, separators=(",", ":")).replace("</", "<\\/")


@lru_cache(maxsize=1)
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@lru_cache(maxsize=1)
def page_script() -> str:
    return resources.files("igcnas.dashboards").joinpath("page.js").read_text(encoding="utf-8")


def render_page(*, title: str, data: dict[str, Any] | None = None, embed_plotly: bool = True,
                refresh_s: float = 5.0) -> str:
    """Static report when ``data`` is given (everything inline); else the live page shell."""
    plotly = (f"<script>{plotly_js()}</script>" if embed_plotly
              else '<script src="plotly.min.js"></script>')
    block = ""
    if data is not None:
        block = f'<script type="application/json" id="igcnas-data">{dumps(data)}</script>'
    else:
        block = f"<script>window.IGCNAS_REFRESH_S = {float(refresh_s)};</script>"
    prefetch = ""
    if data is None:  # live page: ask for the data before plotly.js is parsed
        prefetch = ('<script>window.IGCNAS_FIRST_DATA = fetch("data.json", {cache: "no-store"})'
                    '.then(function (r) { return r.json(); });</script>\n')
    return TEMPLATE.format(title=html.escape(title), plotly=plotly, data=block, script=page_script(),
                           prefetch=prefetch)
