"""Plotly figures built from the dashboard payload (see :mod:`.data`).

Every trace carries ``meta`` naming its role (``dominated``, ``infeasible``,
``front``, ``zoo``, ``pick``, and with latency ``macs-only`` and
``latency-only``) and ``customdata`` holding trial numbers, which is how the
page's script finds points to highlight.

With latency figures there is one more Pareto plot, ``pareto-latency``: its
front is over (accuracy, latency), and rings mark the trials the (accuracy,
MACs) front and the (accuracy, latency) front disagree on, in it and in the
MACs plot beside it, so the reader sees where MACs mislead.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from igcnas.nas.refined import fidelity_words

__all__ = ["build_figures"]

GREY = "rgba(150,150,150,0.45)"
FRONT = "#d62728"
ZOO = "#1f77b4"
PICK = "#ff9f1c"
MACS_ONLY = "#9467bd"
LATENCY_ONLY = "#2ca02c"

# customdata[5] says at which fidelity the accuracy was measured (the search's, or igc-nas refine's with the
# search's figure beside it), see igcnas.nas.refined.fidelity_words.
HOVER = ("<b>trial %{customdata[0]}</b><br>%{customdata[1]}<br>val acc %{customdata[2]:.4f} (%{customdata[5]})<br>"
         "params %{customdata[3]:,}<br>MACs %{customdata[4]:,} (FLOPs = 2 x MACs)<extra>%{meta}</extra>")
# With latency: customdata[6] is the latency line (predicted and measured), see _latency_words.
HOVER_LATENCY = HOVER.replace("<extra>", "<br>%{customdata[6]}<extra>")


class _Figure:
    """Traces kept as plain dicts (no per-point validation), layout validated by plotly."""

    def __init__(self, trace: Any = None) -> None:
        self.data: list[dict[str, Any]] = []
        self.layout = go.Layout()
        if trace is not None:
            self.add_trace(trace)

    def add_trace(self, trace: Any) -> None:
        self.data.append(trace if isinstance(trace, dict) else trace.to_plotly_json())

    def update_layout(self, **kwargs: Any) -> None:
        self.layout.update(**kwargs)

    def to_plotly_json(self) -> dict[str, Any]:
        return {"data": self.data, "layout": self.layout.to_plotly_json()}


def _latency_words(t: dict[str, Any]) -> str:
    """The hover line of a trial's latency: the figure the search used, and the trained network's timing."""
    if t.get("latency_ms") is None:
        return "no latency figure"
    words = f"latency {t['latency_ms']:.3f} ms {t.get('latency_source') or ''}".rstrip()
    if t.get("latency_measured_ms") is not None:
        words += f", {t['latency_measured_ms']:.3f} ms measured after training"
    return words


def _custom(trials: list[dict[str, Any]], latency: bool = False) -> list[list[Any]]:
    return [[t["number"], t["structure"], t["val_accuracy"], int(t["params"] or 0), int(t["macs"] or 0),
             fidelity_words(t.get("fidelity"), t.get("search_val_accuracy"))] + ([_latency_words(t)] if latency else []) for t in trials]


def _scatter(trials: list[dict[str, Any]], x: str, *, name: str, role: str, marker: dict[str, Any],
             mode: str = "markers", gl: bool = False, latency: bool = False) -> dict[str, Any]:
    """A trace as a plain dict: plotly's per-point validation costs seconds at 10,000 trials."""
    return {"type": "scattergl" if gl else "scatter", "x": [t[x] for t in trials],
            "y": [t["val_accuracy"] for t in trials], "mode": mode, "name": name, "meta": role,
            "customdata": _custom(trials, latency), "hovertemplate": HOVER_LATENCY if latency else HOVER,
            "marker": marker}


def _disagreements(payload: dict[str, Any]) -> list[tuple[str, str, list[int], str]]:
    """(role, legend name, trial numbers, colour) of the trials one 2-D front has and the other lacks."""
    view = payload.get("latency_view")
    if not view:
        return []
    return [(role, f"{name} ({len(view[key])})", view[key], color) for role, name, key, color in (
        ("macs-only", "on the MACs front, not the latency front", "macs_only", MACS_ONLY),
        ("latency-only", "on the latency front, not the MACs front", "latency_only", LATENCY_ONLY),
    ) if view[key]]


def _pareto_2d(payload: dict[str, Any], x: str, label: str, *, front_key: str = "front", title: str | None = None,
               front_name: str = "Pareto front", zoo_trace: bool = True, rings: bool = False) -> _Figure:
    """Accuracy against one cost: dominated, infeasible, the front (``front_key``), paper networks, the pick.

    ``rings`` adds the trials the MACs and latency fronts disagree on (hidden when none); with latency
    in the study the hover shows it too.
    """
    latency = bool(payload.get("latency_view"))
    trials = [t for t in payload["trials"] if t["state"] == "COMPLETE" and t["val_accuracy"] is not None
              and t[x] is not None]
    dominated = [t for t in trials if t["feasible"] and not t[front_key]]
    infeasible = [t for t in trials if not t["feasible"]]
    front = sorted((t for t in trials if t[front_key]), key=lambda t: (t[x], -t["val_accuracy"]))
    big = len(trials) > 2000
    hover = HOVER_LATENCY if latency else HOVER
    fig = _Figure()
    fig.add_trace(_scatter(dominated, x, name="dominated", role="dominated", gl=big, latency=latency,
                           marker={"color": GREY, "size": 6}))
    fig.add_trace(_scatter(infeasible, x, name="infeasible (over budget)", role="infeasible", gl=big,
                           latency=latency, marker={"color": "rgba(120,120,120,0.6)", "symbol": "x", "size": 7}))
    fig.add_trace(_scatter(front, x, name=front_name, role="front", mode="lines+markers", latency=latency,
                           marker={"color": FRONT, "size": 9, "line": {"width": 1, "color": "white"}}))
    if rings:
        by_number = {t["number"]: t for t in trials}
        for role, name, numbers, color in _disagreements(payload):
            fig.add_trace(_scatter([by_number[n] for n in numbers if n in by_number], x, name=name, role=role,
                                   latency=latency, marker={"color": color, "symbol": "circle-open", "size": 16,
                                                            "line": {"width": 2.5, "color": color}}))
    zoo = [z for z in payload["zoo"] if z.get(x) is not None] if zoo_trace else []
    if zoo_trace:
        fig.add_trace(go.Scatter(
            x=[z[x] for z in zoo], y=[z["val_accuracy"] if z["val_accuracy"] is not None else None for z in zoo],
            mode="markers", name="paper networks (evaluated)", meta="zoo",
            customdata=[[z["name"], z["params"], z["macs"]] for z in zoo],
            hovertemplate="<b>%{customdata[0]}</b> (paper)<br>params %{customdata[1]:,}<br>MACs %{customdata[2]:,}"
                          "<extra>zoo</extra>",
            marker={"color": ZOO, "symbol": "diamond", "size": 10}))
    fig.add_trace(go.Scatter(x=[], y=[], mode="markers", name="best within budget", meta="pick", customdata=[],
                             hovertemplate=hover,
                             marker={"color": PICK, "symbol": "star", "size": 20, "line": {"width": 1,
                                                                                        "color": "black"}}))
    # Paper networks never evaluated in this study: closed-form costs as vertical reference lines.
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": z[x], "x1": z[x], "y0": 0, "y1": 0.04,
               "line": {"color": ZOO, "width": 2}, "name": f"zoo:{z['name']}"} for z in zoo
              if z["val_accuracy"] is None]
    fig.update_layout(
        title=title or f"Validation accuracy vs {label}", xaxis={"title": label, "type": "log"},
        yaxis={"title": "validation accuracy"}, template="plotly_white", height=430,
        legend={"orientation": "h", "y": -0.2}, margin={"l": 60, "r": 20, "t": 70 if title else 50, "b": 40},
        shapes=shapes, uirevision="keep",
    )
    return fig


def _pareto_latency(payload: dict[str, Any]) -> _Figure:
    """Accuracy against latency, its own front, titled with the device and runtime the figures belong to."""
    latency = payload.get("latency") or {}
    # A study without the record (an older one): the trials still say whether their figures were predicted.
    source = latency.get("source") or next((t["latency_source"] for t in payload["trials"] if t["latency_source"]),
                                           "measured")
    where = html.escape(latency.get("describe") or "device and runtime not recorded")
    return _pareto_2d(payload, "latency_ms", f"{source} latency (ms)", front_key="front_latency",
                      front_name="front of accuracy and latency", zoo_trace=False, rings=True,
                      title=f"Validation accuracy vs {source} latency<br><sup>{where}</sup>")


MAX_3D_DOMINATED = 1500


def _pareto_3d(payload: dict[str, Any]) -> _Figure:
    """The front exactly; dominated trials evenly thinned to at most MAX_3D_DOMINATED (software WebGL is slow)."""
    trials = [t for t in payload["trials"] if t["state"] == "COMPLETE" and t["val_accuracy"] is not None]
    dominated = [t for t in trials if not t["front"]]
    label = "dominated"
    if len(dominated) > MAX_3D_DOMINATED:
        step = len(dominated) / MAX_3D_DOMINATED
        dominated = [dominated[int(i * step)] for i in range(MAX_3D_DOMINATED)]
        label = f"dominated (every {step:.1f}th shown)"
    fig = _Figure()
    for role, subset, color, size in (
        (label, dominated, GREY, 3),
        ("front", [t for t in trials if t["front"]], FRONT, 6),
    ):
        fig.add_trace({"type": "scatter3d", "x": [t["params"] for t in subset], "y": [t["macs"] for t in subset],
                       "z": [t["val_accuracy"] for t in subset], "mode": "markers",
                       "name": "Pareto front" if role == "front" else role,
                       "meta": "front" if role == "front" else "dominated",
                       "customdata": _custom(subset), "hovertemplate": HOVER,
                       "marker": {"color": color, "size": size}})
    fig.update_layout(title="Accuracy, params and MACs", template="plotly_white", height=430,
                      scene={"xaxis": {"title": "params", "type": "log"}, "yaxis": {"title": "MACs", "type": "log"},
                             "zaxis": {"title": "val acc"}},
                      margin={"l": 0, "r": 0, "t": 50, "b": 0}, uirevision="keep")
    return fig


def _history(payload: dict[str, Any]) -> tuple[_Figure, _Figure]:
    h = payload["history"]
    ref = payload.get("reference_point") or {}
    hv = _Figure(go.Scatter(x=h["number"], y=h["hypervolume"], mode="lines", name="hypervolume", meta="hv",
                              line={"color": FRONT}))
    hv.update_layout(title="Hypervolume over trials (normalised objectives, reference point 1,1,1; "
                           f"params / {ref.get('params', '?'):,}, MACs / {ref.get('macs', '?'):,})"
                     if ref else "Hypervolume over trials",
                     xaxis={"title": "trial"}, yaxis={"title": "hypervolume"}, template="plotly_white",
                     height=300, margin={"l": 60, "r": 20, "t": 50, "b": 40}, uirevision="keep")
    complete = [t for t in payload["trials"] if t["state"] == "COMPLETE" and t["val_accuracy"] is not None]
    acc = _Figure()
    acc.add_trace({"type": "scattergl", "x": [t["number"] for t in complete],
                   "y": [t["val_accuracy"] for t in complete], "mode": "markers", "name": "trial",
                   "meta": "accuracy", "marker": {"color": GREY, "size": 5}})
    acc.add_trace(go.Scatter(x=h["number"], y=h["best_accuracy"], mode="lines", name="best so far",
                             meta="best", line={"color": FRONT}))
    acc.update_layout(title="Validation accuracy over trials", xaxis={"title": "trial"},
                      yaxis={"title": "validation accuracy"}, template="plotly_white", height=300,
                      margin={"l": 60, "r": 20, "t": 50, "b": 40}, uirevision="keep")
    return hv, acc


def build_figures(payload: dict[str, Any]) -> dict[str, Any]:
    """All figures as plotly JSON dicts keyed by the page element they go into."""
    hv, acc = _history(payload)
    figures = {
        "pareto-params": _pareto_2d(payload, "params", "params"),
        "pareto-macs": _pareto_2d(payload, "macs", "MACs (multiply-accumulates)", rings=True),
        "pareto-3d": _pareto_3d(payload),
        "hv-history": hv,
        "acc-history": acc,
    }
    if payload.get("latency_view"):  # no empty plot for a study without latency figures
        figures["pareto-latency"] = _pareto_latency(payload)
    return {key: fig.to_plotly_json() for key, fig in figures.items()}
