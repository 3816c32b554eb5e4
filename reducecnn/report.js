// report.html's plots and runs table, drawn as SVG from the JSON that htmlreport.py embeds.
// No library: the page must open from disk with no network. When everything rendered without an
// exception, <body data-rendered> holds the number of plots drawn; any error is written into #errors.
"use strict";
(function () {
  let errorCount = 0;
  function recordError(message) {
    const node = document.createElement("div");
    node.className = "script-error";
    node.textContent = "script error: " + message;
    document.getElementById("errors").appendChild(node);
    document.body.setAttribute("data-errors", String(++errorCount));
  }
  window.onerror = function (message, source, line) { recordError(message + " (line " + line + ")"); };

  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"];
  // More recipes than this in one model's panel: lines only, their bands would cover each other.
  const MAX_BANDED_RECIPES = 4;
  const data = JSON.parse(document.getElementById("report-data").textContent);

  function svgNode(name, attributes, parent, text) {
    const node = document.createElementNS(SVG, name);
    for (const key in attributes) node.setAttribute(key, attributes[key]);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function htmlNode(name, attributes, parent, text) {
    const node = document.createElement(name);
    for (const key in attributes) node.setAttribute(key, attributes[key]);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function percent(value) { return value === null ? "-" : (value * 100).toFixed(2); }
  function meanStd(mean, std) { return percent(mean) + " ± " + percent(std); }

  function linearTicks(low, high, count) {
    const raw = (high - low) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(f => f * power).find(s => s >= raw);
    const ticks = [];
    for (let tick = Math.ceil(low / step) * step; tick <= high + step * 1e-9; tick += step) ticks.push(+tick.toFixed(10));
    return ticks;
  }
  function logTicks(low, high) {
    const ticks = [];
    for (let power = Math.floor(Math.log10(low)); power <= Math.ceil(Math.log10(high)); power++) {
      const tick = Math.pow(10, power);
      if (tick >= low && tick <= high) ticks.push(tick);
    }
    return ticks;
  }
  function padded(low, high, share) {
    if (!(high > low)) return [low - 0.5, high + 0.5];
    const room = (high - low) * share;
    return [low - room, high + room];
  }

  // An empty plot with axes, grid and labels; returns the svg and the data -> pixel maps.
  function axes(parent, options) {
    const width = options.width, height = options.height, left = 62, right = 16, top = 30, bottom = 44;
    const svg = svgNode("svg", {class: "plot", width: width, height: height, viewBox: `0 0 ${width} ${height}`}, parent);
    const [x0, x1] = options.x, [y0, y1] = options.y;
    const toX = options.logX
      ? v => left + (Math.log10(v) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0)) * (width - left - right)
      : v => left + (v - x0) / (x1 - x0) * (width - left - right);
    const toY = v => top + (y1 - v) / (y1 - y0) * (height - top - bottom);
    const xTicks = options.logX ? logTicks(x0, x1) : linearTicks(x0, x1, 6).filter(t => !options.integerX || Number.isInteger(t));
    for (const tick of xTicks) {
      svgNode("line", {class: "grid", x1: toX(tick), x2: toX(tick), y1: top, y2: height - bottom}, svg);
      svgNode("text", {x: toX(tick), y: height - bottom + 14, "text-anchor": "middle"}, svg,
              options.logX ? tick.toLocaleString("en") : String(tick));
    }
    for (const tick of linearTicks(y0, y1, 6)) {
      svgNode("line", {class: "grid", x1: left, x2: width - right, y1: toY(tick), y2: toY(tick)}, svg);
      svgNode("text", {x: left - 6, y: toY(tick) + 4, "text-anchor": "end"}, svg, String(tick));
    }
    svgNode("rect", {class: "axis", x: left, y: top, width: width - left - right, height: height - top - bottom,
                     fill: "none"}, svg);
    svgNode("text", {x: (left + width - right) / 2, y: height - 8, "text-anchor": "middle"}, svg, options.xLabel);
    svgNode("text", {x: 14, y: (top + height - bottom) / 2, "text-anchor": "middle",
                     transform: `rotate(-90 14 ${(top + height - bottom) / 2})`}, svg, options.yLabel);
    svgNode("text", {x: left, y: 18, "font-weight": "bold"}, svg, options.title);
    return {svg: svg, x: toX, y: toY};
  }

  function legend(parent, entries) {
    const box = htmlNode("div", {class: "legend"}, parent);
    for (const [label, color, dashed] of entries) {
      const item = htmlNode("span", {}, box);
      htmlNode("b", {style: `color:${color}`}, item, dashed ? "- - " : "● ");
      item.appendChild(document.createTextNode(label));
    }
  }

  function drawAccuracy(parent) {
    const points = data.points.filter(p => p.mean !== null && p.params !== null);
    if (!points.length) { htmlNode("p", {class: "note"}, parent, "No successful runs to plot."); return 0; }
    const models = [...new Set(points.map(p => p.model))];
    const xs = points.map(p => p.params).concat(data.study.map(s => s.params));
    const ys = points.flatMap(p => [p.mean - (p.std || 0), p.mean + (p.std || 0)]).concat(data.study.map(s => s.accuracy));
    const plot = axes(parent, {width: 900, height: 460, logX: true, x: [Math.min(...xs) / 2, Math.max(...xs) * 2],
      y: padded(Math.min(...ys) * 100, Math.max(...ys) * 100, 0.08), xLabel: "trainable parameters (log scale)",
      yLabel: "test accuracy (%)", title: "Test accuracy vs trainable parameters (mean ± 1 std over seeds)"});
    const perModel = {};
    for (const point of points) (perModel[point.model] = perModel[point.model] || []).push(point);
    for (const [model, series] of Object.entries(perModel)) {
      const color = COLORS[models.indexOf(model) % COLORS.length];
      series.forEach((point, index) => {
        // a model's recipes share its parameter count: spread them over at most a quarter decade
        const step = Math.min(0.03, 0.25 / series.length);
        const x = plot.x(point.params * Math.pow(10, step * (index - (series.length - 1) / 2)));
        const group = svgNode("g", {class: "point-group"}, plot.svg);
        const spread = point.std || 0;
        svgNode("line", {x1: x, x2: x, y1: plot.y((point.mean - spread) * 100), y2: plot.y((point.mean + spread) * 100),
                         stroke: color, "stroke-width": 1.5}, group);
        svgNode("circle", {class: "point", cx: x, cy: plot.y(point.mean * 100), r: 5, fill: color}, group);
        if (point.best) svgNode("circle", {cx: x, cy: plot.y(point.mean * 100), r: 9, fill: "none", stroke: "#000",
                                           "stroke-width": 1.5}, group);
        svgNode("title", {}, group, `${point.model}: ${point.label}\ntest accuracy ${meanStd(point.mean, point.std)} % ` +
          `(${point.ok} ok, ${point.failed} failed)\n95% CI [${percent(point.ci_low)}, ${percent(point.ci_high)}]\n` +
          `validation ${percent(point.val)} %\n${point.params.toLocaleString("en")} trainable parameters` +
          (point.best ? "\nchosen by validation accuracy" : ""));
      });
      const last = series[series.length - 1];
      svgNode("text", {x: plot.x(last.params) + 12, y: plot.y(last.mean * 100) - 8, fill: color}, plot.svg, model);
    }
    for (const study of data.study) {
      const x = plot.x(study.params), y = plot.y(study.accuracy * 100);
      const corners = [];
      for (let i = 0; i < 10; i++) {
        const radius = i % 2 ? 4 : 10, angle = Math.PI / 5 * i - Math.PI / 2;
        corners.push(`${x + radius * Math.cos(angle)},${y + radius * Math.sin(angle)}`);
      }
      const star = svgNode("polygon", {class: "study", points: corners.join(" "), fill: "none", stroke: "#000"}, plot.svg);
      svgNode("title", {}, star, `the study's ${study.model}: ${percent(study.accuracy)} % (one unseeded run), ` +
              `${study.params.toLocaleString("en")} trainable parameters`);
    }
    legend(parent, models.map((model, index) => [model, COLORS[index % COLORS.length]]));
    return 1;
  }

  function drawCurves(parent) {
    if (!data.curves.length) { htmlNode("p", {class: "note"}, parent, "No epoch records of successful runs."); return 0; }
    const labels = [...new Set(data.curves.map(c => c.label))];
    const models = [...new Set(data.curves.map(c => c.model))];
    for (const model of models) {
      const series = data.curves.filter(c => c.model === model);
      const epochs = series.flatMap(c => c.epoch);
      const values = series.flatMap(c => c.mean.map((m, i) => [m - (c.std[i] || 0), m + (c.std[i] || 0)]).flat());
      const box = htmlNode("div", {class: "curve-panel"}, parent);
      const plot = axes(box, {width: 540, height: 330, integerX: true, x: [Math.min(...epochs), Math.max(Math.max(...epochs), Math.min(...epochs) + 1)],
        y: padded(Math.max(0, Math.min(...values) * 100), Math.min(100, Math.max(...values) * 100), 0.05),
        xLabel: "epoch", yLabel: "accuracy (%)", title: model});
      const banded = new Set(series.map(c => c.label)).size <= MAX_BANDED_RECIPES;
      for (const curve of series) {
        const color = COLORS[labels.indexOf(curve.label) % COLORS.length];
        const upper = curve.epoch.map((e, i) => `${plot.x(e)},${plot.y((curve.mean[i] + (curve.std[i] || 0)) * 100)}`);
        const lower = curve.epoch.map((e, i) => `${plot.x(e)},${plot.y((curve.mean[i] - (curve.std[i] || 0)) * 100)}`).reverse();
        if (banded) svgNode("polygon", {class: "band", points: upper.concat(lower).join(" "), fill: color,
                                        "fill-opacity": 0.15, stroke: "none"}, plot.svg);
        const line = svgNode("polyline", {class: "curve", fill: "none", stroke: color, "stroke-width": 1.8,
          "stroke-dasharray": curve.kind === "train" ? "5,4" : "none",
          points: curve.epoch.map((e, i) => `${plot.x(e)},${plot.y(curve.mean[i] * 100)}`).join(" ")}, plot.svg);
        svgNode("title", {}, line, `${model}, ${curve.label}: ${curve.kind}`);
        curve.epoch.forEach((epoch, i) => {
          const dot = svgNode("circle", {cx: plot.x(epoch), cy: plot.y(curve.mean[i] * 100), r: 2.5, fill: color}, plot.svg);
          svgNode("title", {}, dot, `${model}, ${curve.label}\n${curve.kind} accuracy at epoch ${epoch}: ` +
                  `${meanStd(curve.mean[i], curve.std[i])} % over ${curve.runs[i]} runs`);
        });
      }
      legend(box, [...new Set(series.map(c => c.label))].map(label => [label, COLORS[labels.indexOf(label) % COLORS.length]]));
    }
    return models.length;
  }

  function drawGrids(parent) {
    if (!data.grids.length) return 0;
    htmlNode("h2", {}, parent, "Recipes x models");
    htmlNode("p", {class: "note"}, parent, "Test accuracy in % per recipe and model, mean ± std (ok runs); shaded " +
             "within each model from its worst recipe (light) to its best (dark). Outlined: the model's recipe " +
             "chosen by the highest mean validation accuracy (never by test accuracy).");
    for (const grid of data.grids) {
      htmlNode("h3", {}, parent, grid.title);
      const table = htmlNode("table", {class: "heatmap"}, parent);
      const head = htmlNode("tr", {}, htmlNode("thead", {}, table));
      htmlNode("th", {}, head, "recipe");
      grid.models.forEach(model => htmlNode("th", {}, head, model));
      const body = htmlNode("tbody", {}, table);
      const ranges = grid.models.map((_, column) => {
        const means = grid.cells.map(row => row[column].mean).filter(v => v !== null);
        return [Math.min(...means), Math.max(...means)];
      });
      grid.recipes.forEach((recipe, rowIndex) => {
        const row = htmlNode("tr", {}, body);
        htmlNode("th", {}, row, recipe);
        grid.models.forEach((model, column) => {
          const cell = grid.cells[rowIndex][column];
          const [low, high] = ranges[column];
          const share = cell.mean === null ? 0 : high > low ? (cell.mean - low) / (high - low) : 1;
          const best = grid.best[model] === recipe;
          const td = htmlNode("td", {class: "cell" + (best ? " best" : ""),
            style: cell.mean === null ? "" : `background: hsl(210, 70%, ${92 - 42 * share}%); color: ${share > 0.6 ? "#fff" : "#000"}`}, row,
            cell.mean === null ? "-" : `${meanStd(cell.mean, cell.std)} (${cell.n})` + (best ? " ★" : ""));
          td.title = `${model}, ${recipe}\ntest ${meanStd(cell.mean, cell.std)} %, validation ${percent(cell.val)} %` +
                     (best ? "\nchosen by validation accuracy" : "");
        });
      });
    }
    return data.grids.length;
  }

  // The runs table: filter (text in any cell, or column=value, column<number, column>number), sort, pages.
  function drawRuns(parent, note) {
    const runs = data.runs, pageSize = 100;
    note.textContent = runs.embedded === runs.total
      ? `All ${runs.total.toLocaleString("en")} runs. Click a header to sort; filter by text, or column=value, column<number.`
      : `The first ${runs.embedded.toLocaleString("en")} of ${runs.total.toLocaleString("en")} runs are embedded ` +
        "(failed runs first, then by run id) to keep this page small; the full table is the results folder's runs/. " +
        "Click a header to sort; filter by text, or column=value, column<number.";
    const state = {query: "", sort: null, ascending: true, page: 0};
    const controls = htmlNode("div", {class: "controls"}, parent);
    const input = htmlNode("input", {type: "search", id: "runs-filter", placeholder: "filter, e.g. failed  model=approach1  test_accuracy<0.98"}, controls);
    const previous = htmlNode("button", {}, controls, "‹ previous");
    const next = htmlNode("button", {}, controls, "next ›");
    const info = htmlNode("span", {id: "runs-info"}, controls);
    const table = htmlNode("table", {id: "runs-table"}, parent);
    const head = htmlNode("tr", {}, htmlNode("thead", {}, table));
    const body = htmlNode("tbody", {}, table);
    const status = runs.columns.indexOf("status");
    runs.columns.forEach((column, index) => {
      const th = htmlNode("th", {class: "sortable"}, head, column);
      th.addEventListener("click", () => {
        state.ascending = state.sort === index ? !state.ascending : true;
        state.sort = index; state.page = 0; render();
      });
    });
    function matches(row, term) {
      const test = /^(\w+)(=|<|>)(.*)$/.exec(term);
      if (test && runs.columns.includes(test[1])) {
        const value = row[runs.columns.indexOf(test[1])];
        if (test[2] === "=") return String(value).toLowerCase() === test[3].toLowerCase();
        return value !== null && (test[2] === "<" ? value < +test[3] : value > +test[3]);
      }
      return row.some(value => value !== null && String(value).toLowerCase().includes(term.toLowerCase()));
    }
    function render() {
      const terms = state.query.split(/\s+/).filter(Boolean);
      let rows = runs.rows.filter(row => terms.every(term => matches(row, term)));
      if (state.sort !== null) {
        const sign = state.ascending ? 1 : -1, index = state.sort;
        rows = rows.slice().sort((a, b) => a[index] === b[index] ? 0 : a[index] === null ? 1 : b[index] === null ? -1
                                 : (a[index] < b[index] ? -sign : sign));
      }
      const pages = Math.max(1, Math.ceil(rows.length / pageSize));
      state.page = Math.min(state.page, pages - 1);
      body.textContent = "";
      for (const row of rows.slice(state.page * pageSize, (state.page + 1) * pageSize)) {
        const tr = htmlNode("tr", {class: row[status] === "ok" ? "" : "failed"}, body);
        row.forEach(value => htmlNode("td", {class: typeof value === "number" ? "num" : ""}, tr,
                                      value === null ? "-" : String(value)));
      }
      info.textContent = ` ${rows.length.toLocaleString("en")} matching runs, page ${state.page + 1} of ${pages}`;
    }
    input.addEventListener("input", () => { state.query = input.value; state.page = 0; render(); });
    previous.addEventListener("click", () => { state.page = Math.max(0, state.page - 1); render(); });
    next.addEventListener("click", () => { state.page += 1; render(); });
    render();
  }

  try {
    const plots = drawAccuracy(document.getElementById("accuracy")) + drawGrids(document.getElementById("grids")) +
                  drawCurves(document.getElementById("curves"));
    drawRuns(document.getElementById("runs"), document.getElementById("runs-note"));
    document.body.setAttribute("data-render-ms", String(Math.round(performance.now())));
    document.body.setAttribute("data-rendered", String(plots));
  } catch (error) {
    recordError(error && error.stack ? error.stack : String(error));
  }
})();
