// igc-nas dashboard: renders the figures built in Python, and does the interactive part here:
// budget controls (same pick rule as igcnas/nas/pick.py), the sortable front table, and the
// details of a selected trial (training curve, conditions, block drawing).
(function () {
  "use strict";
  const IGC = (window.igcnas = { payload: null, figures: null, pick: null, selected: null, renders: 0 });
  const UNITS = { "": 1, k: 1e3, m: 1e6, g: 1e9 };

  function parseCount(text) {
    const m = String(text || "").trim().match(/^([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmg]?)$/i);
    if (!m) return null;
    const v = parseFloat(m[1]) * UNITS[m[2].toLowerCase()];
    return v > 0 ? v : null;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "-";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(3) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(3) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(3) + "k";
    return String(Math.round(v));
  }
  function el(id) { return document.getElementById(id); }

  function budget() {
    return {
      max_params: parseCount(el("max-params").value),
      max_macs: parseCount(el("max-macs").value),
      max_latency_ms: parseCount(el("max-latency").value),
    };
  }

  // The pick rule of igcnas.nas.pick.choose: front (counting latency when a latency budget is given),
  // within budget, most accurate; ties -> fewer MACs, fewer params, lower trial number. "Within" is
  // igcnas.nas.budget.violation: inclusive (a cost equal to its bound fits), on the unrounded figure.
  function choose(b) {
    const inside = IGC.payload.trials.filter(function (t) {
      if (!(b.max_latency_ms !== null ? t.front_with_latency : t.front)) return false;
      if (b.max_params !== null && t.params > b.max_params) return false;
      if (b.max_macs !== null && t.macs > b.max_macs) return false;
      if (b.max_latency_ms !== null && (t.latency_ms === null || t.latency_ms > b.max_latency_ms)) return false;
      return true;
    });
    inside.sort(function (a, c) {
      return (c.val_accuracy - a.val_accuracy) || (a.macs - c.macs) || (a.params - c.params) || (a.number - c.number);
    });
    return { pick: inside.length ? inside[0] : null, inside: inside.length };
  }

  function traceIndex(fig, role) {
    const data = el(fig).data || [];
    for (let i = 0; i < data.length; i++) if (data[i].meta === role) return i;
    return -1;
  }

  // The pick's hover row as the figure itself built it (with latency it holds the latency line too).
  function customFor(fig, t) {
    const data = el(fig).data || [];
    for (let i = 0; i < data.length; i++) {
      if (data[i].meta === "pick" || !data[i].customdata) continue;
      const row = data[i].customdata.find(function (c) { return c[0] === t.number; });
      if (row) return row;
    }
    return [t.number, t.structure, t.val_accuracy, t.params, t.macs, t.fidelity || "search"];
  }

  function ms(v) { return v === null || v === undefined ? "-" : v.toFixed(3); }

  function applyBudget() {
    if (!IGC.payload) return;
    const b = budget();
    const res = choose(b);
    IGC.pick = res.pick ? res.pick.number : null;
    const t = res.pick;
    const specs = [["pareto-params", "params", b.max_params], ["pareto-macs", "macs", b.max_macs]];
    if (IGC.figures["pareto-latency"]) specs.push(["pareto-latency", "latency_ms", b.max_latency_ms]);
    specs.forEach(function (spec) {
      const fig = spec[0], key = spec[1], limit = spec[2];
      const idx = traceIndex(fig, "pick");
      if (idx >= 0) {
        Plotly.restyle(el(fig), {
          x: [t ? [t[key]] : []], y: [t ? [t.val_accuracy] : []],
          customdata: [t ? [customFor(fig, t)] : []],
        }, [idx]);
      }
      const base = (IGC.baseShapes[fig] || []).slice();
      if (limit !== null) {
        const xs = IGC.payload.trials.map(function (tr) { return tr[key] || 0; });
        const far = Math.max(limit, Math.max.apply(null, xs.concat([1]))) * 3;
        base.push({ type: "rect", xref: "x", yref: "paper", x0: limit, x1: far, y0: 0, y1: 1,
                    fillcolor: "rgba(120,120,120,0.10)", line: { width: 0 }, layer: "below", name: "over-budget" });
      }
      Plotly.relayout(el(fig), { shapes: base });
    });
    el("pick").textContent = t
      ? "Best within budget: trial " + t.number + " — val acc " + t.val_accuracy.toFixed(4) +
        (t.fidelity ? " (" + t.fidelity + ")" : "") + ", params " +
        fmt(t.params) + ", MACs " + fmt(t.macs) + (t.latency_ms === null ? "" : ", latency " + ms(t.latency_ms) +
        " ms") + " — " + t.structure + " (" + res.inside + " front trials fit)"
      : (IGC.payload.front.length ? "No trial on the front fits this budget." : "No completed trials yet.");
    el("pick").dataset.trial = t ? String(t.number) : "";
    renderTable();
  }

  let sortKey = "val_accuracy", sortDir = -1, lastTableHtml = "";
  function renderTable() {
    const rows = IGC.payload.trials.filter(function (t) { return t.front; });
    rows.sort(function (a, c) {
      const x = a[sortKey], y = c[sortKey];
      if (typeof x === "string") return sortDir * x.localeCompare(y);
      return sortDir * ((x === null ? -Infinity : x) - (y === null ? -Infinity : y));
    });
    const body = rows.map(function (t) {
      const cls = (t.number === IGC.pick ? "pick " : "") + (t.number === IGC.selected ? "sel" : "");
      return "<tr class='" + cls + "' data-trial='" + t.number + "'><td>" + t.number + "</td><td>" +
        t.val_accuracy.toFixed(4) + (t.fidelity && t.fidelity.indexOf("refined") === 0
          ? " <small title='" + t.fidelity + "'>refined; search " + t.search_val_accuracy.toFixed(4) + "</small>"
          : "") + "</td><td>" + fmt(t.params) + "</td><td>" + fmt(t.macs) + "</td><td>" +
        (t.latency_ms === null ? "-" : t.latency_ms.toFixed(2)) + "</td><td>" +
        (IGC.hasMeasured ? ms(t.latency_measured_ms) + "</td><td>" : "") + t.structure + "</td></tr>";
    }).join("");
    if (body !== lastTableHtml) {  // rebuild only on change, so a click in progress is not lost
      el("front-table").querySelector("tbody").innerHTML = body;
      lastTableHtml = body;
    }
  }

  function drawBlocks(stages) {
    const W = 720, rowH = 46;
    let svg = "<svg xmlns='http://www.w3.org/2000/svg' width='" + W + "' height='" + (stages.length * rowH + 10) + "'>";
    stages.forEach(function (s, i) {
      const y = 8 + i * rowH;
      svg += "<text x='2' y='" + (y + 22) + "' font-size='12'>C" + s.width + "</text>";
      let x = 50;
      (s.layers || []).forEach(function (layer) {
        if (layer.op === "shuffle") {
          svg += "<text x='" + x + "' y='" + (y + 22) + "' font-size='16' fill='#888'>⇄</text>";
          x += 24;
          return;
        }
        const w = layer.op === "conv3x3" ? 150 : 120;
        const g = Math.min(layer.groups, 64);
        const color = layer.op === "conv3x3" ? "#9ecae1" : "#fdae6b";
        for (let k = 0; k < g; k++) {
          svg += "<rect x='" + (x + k * w / g) + "' y='" + y + "' width='" + Math.max(w / g - 1, 0.5) +
            "' height='30' fill='" + color + "' stroke='#555' stroke-width='0.3'/>";
        }
        svg += "<text x='" + x + "' y='" + (y + 42) + "' font-size='10'>" + layer.op + " · " + layer.groups +
          " groups</text>";
        x += w + 10;
      });
    });
    return svg + "</svg>";
  }

  function select(number) {
    const t = IGC.payload.trials.find(function (x) { return x.number === number; });
    if (!t) return;
    IGC.selected = number;
    el("details-title").textContent = "Trial " + t.number + ": " + t.structure;
    const curve = t.curve || [];
    Plotly.react(el("curve"), [{ x: curve.map(function (_, i) { return i + 1; }), y: curve, mode: "lines+markers",
      name: "validation accuracy", line: { color: "#d62728" } }],
      { title: "Training curve", xaxis: { title: "epoch", dtick: 1 }, yaxis: { title: "val acc" },
        template: "plotly_white", height: 260, margin: { l: 50, r: 10, t: 40, b: 40 } }, { responsive: true });
    const stages = t.stages || [];
    el("conditions").innerHTML = stages.length ? "<ul>" + stages.map(function (s) {
      if (s.error) return "<li>" + s.error + "</li>";
      let text = "C=" + s.width + ": " + s.condition;
      if (s.kind === "interleaved") {
        text += "; L=" + s.L + ", K1=" + s.k1 + ", K=(" + s.chain.join(", ") + "); balance terms (" +
          s.balance_terms.join(", ") + "), params / bound " + s.params_over_bound;
        if (s.pointwise_params_over_bound !== undefined) text += " (1x1 chain: " + s.pointwise_params_over_bound + ")";
      } else {
        text += "; expansion " + s.expansion + ", groups " + s.groups;
      }
      return "<li>" + text + "</li>";
    }).join("") + "</ul>" : "<p>Conditions and drawing are shown for trials on the front.</p>";
    el("drawing").innerHTML = stages.length ? drawBlocks(stages) : "";
    renderTable();
  }

  function render(data) {
    const renderStart = performance.now();
    el("error").textContent = data.error || "";
    if (data.error && !data.payload) return;
    IGC.payload = data.payload;
    IGC.figures = data.figures;
    const p = data.payload;
    el("summary").textContent = "Study " + p.study + (p.dataset ? " on " + p.dataset : "") + ": " + p.n_trials +
      " trials, " + p.n_complete + " complete, " + p.front.length + " on the Pareto front." +
      (p.n_complete ? "" : " No completed trials yet: the plots fill in as the search runs.");
    // Latency belongs to one device and runtime: the budget says which, and the accuracy-latency plot
    // (beside the MACs one) appears only when the study has latency figures.
    el("latency-control").style.display = p.latency_measured ? "" : "none";
    const lat = p.latency || {};
    el("latency-label").textContent = "max " + (lat.source === "predicted" ? "predicted " : "") + "latency (ms)" +
      (lat.describe ? " on " + lat.describe : (p.latency_measured ? " (device and runtime not recorded)" : ""));
    el("plots").classList.toggle("with-latency", !!data.figures["pareto-latency"]);
    if (!data.figures["pareto-latency"] && el("pareto-latency").data) Plotly.purge(el("pareto-latency"));
    IGC.hasMeasured = p.trials.some(function (t) { return t.latency_measured_ms !== null &&
                                                          t.latency_measured_ms !== undefined; });
    el("measured-col").style.display = IGC.hasMeasured ? "" : "none";
    IGC.timings = {};
    IGC.baseShapes = {};
    Object.keys(data.figures).forEach(function (key) {
      const fig = data.figures[key];
      // Plotly keeps (and relayout mutates) the layout it is given: remember the figure's own shapes.
      IGC.baseShapes[key] = JSON.parse(JSON.stringify(fig.layout.shapes || []));
      const started = performance.now();
      Plotly.react(el(key), fig.data, fig.layout, { responsive: true, displaylogo: false });
      IGC.timings[key] = Math.round(performance.now() - started);
      if (!el(key).dataset.bound) {
        el(key).dataset.bound = "1";
        el(key).on("plotly_click", function (ev) {
          const pt = ev.points && ev.points[0];
          if (pt && pt.customdata && typeof pt.customdata[0] === "number") select(pt.customdata[0]);
        });
      }
    });
    const budgetStart = performance.now();
    applyBudget();
    IGC.timings.budget = Math.round(performance.now() - budgetStart);
    if (IGC.selected !== null) select(IGC.selected);
    IGC.timings.render = Math.round(performance.now() - renderStart);
    IGC.timings.at = Math.round(renderStart);
    IGC.renders += 1;
    document.body.dataset.rendered = String(IGC.renders);
  }

  IGC.render = render;
  window.igcnasRender = render;  // used by bench/dashboard_render.py to time one refresh

  function init() {
    document.querySelectorAll("#front-table th").forEach(function (th) {
      th.addEventListener("click", function () {
        const key = th.dataset.key;
        sortDir = key === sortKey ? -sortDir : (key === "val_accuracy" ? -1 : 1);
        sortKey = key;
        renderTable();
      });
    });
    // One delegated listener: rows are rebuilt on every refresh.
    el("front-table").querySelector("tbody").addEventListener("click", function (ev) {
      const tr = ev.target.closest("tr");
      if (tr && tr.dataset.trial) select(parseInt(tr.dataset.trial, 10));
    });
    ["max-params", "max-macs", "max-latency"].forEach(function (id) {
      el(id).addEventListener("input", applyBudget);
      el(id).addEventListener("change", applyBudget);
    });
    const embedded = document.getElementById("igcnas-data");
    if (embedded) {
      render(JSON.parse(embedded.textContent));
      return;
    }
    const refresh = function (pending) {
      (pending || fetch("data.json", { cache: "no-store" }).then(function (r) { return r.json(); })).then(render)
        .catch(function (e) { el("error").textContent = "Cannot reach the dashboard server: " + e; });
    };
    refresh(window.IGCNAS_FIRST_DATA);  // started in <head>, while plotly.js was still loading
    setInterval(refresh, (window.IGCNAS_REFRESH_S || 5) * 1000);
  }
  window.addEventListener("DOMContentLoaded", init);
})();
