// Small inline-SVG line charts of /ui/api/charts: one minute per point, gaps where no data.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#15803d", "#b91c1c", "#a16207", "#7c3aed", "#0891b2", "#db2777"];
const CHART = { width: 360, height: 150, left: 40, right: 8, top: 10, bottom: 22 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

// One polyline per run of consecutive non-null values.
function paths(values, x, y) {
  const runs = [];
  let run = [];
  values.forEach((v, i) => {
    if (v === null || v === undefined) { if (run.length) runs.push(run); run = []; return; }
    run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  if (run.length) runs.push(run);
  return runs;
}

function lineChart(title, series, minutes, format = (v) => `${v}`) {
  const { width, height, left, right, top, bottom } = CHART;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const max = niceMax(Math.max(0, ...all));
  const x = (i) => left + (i + 0.5) * (width - left - right) / minutes;
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  for (const frac of [0, 0.5, 1]) {
    const gy = y(max * frac);
    chart.append(svg("line", { x1: left, x2: width - right, y1: gy, y2: gy, class: "grid" }));
    chart.append(svg("text", { x: left - 4, y: gy + 3, class: "axis", "text-anchor": "end" }, format(max * frac)));
  }
  chart.append(svg("text", { x: left, y: height - 6, class: "axis" }, `-${minutes} min`));
  chart.append(svg("text", { x: width - right, y: height - 6, class: "axis", "text-anchor": "end" }, "now"));
  series.forEach((s, n) => {
    const color = COLORS[n % COLORS.length];
    for (const run of paths(s.values, x, y)) {
      const shape = run.length === 1
        ? svg("circle", { cx: run[0].split(",")[0], cy: run[0].split(",")[1], r: 2, fill: color })
        : svg("polyline", { points: run.join(" "), fill: "none", stroke: color, "stroke-width": 1.5 });
      shape.setAttribute("data-series", s.name);
      chart.append(shape);
    }
  });
  const legend = el("div", { class: "legend" }, ...series.map((s, n) =>
    el("span", {}, el("i", { style: `background:${COLORS[n % COLORS.length]}` }), ` ${s.name}`)));
  return el("figure", { class: "chart-box" }, el("figcaption", { text: title }), chart, legend);
}

function renderCharts(data) {
  window.wan22Charts = data;  // for end-to-end tests and the curious
  const m = data.minutes;
  const count = (v) => (Number.isInteger(v) ? `${v}` : v.toFixed(1));
  const counts = ["accepted", "completed", "failed"].map((k) => ({ name: k, values: data.counts[k] }));
  const depth = Object.entries(data.queue_depth)
    .filter(([, values]) => values.some((v) => v > 0))
    .map(([task, values]) => ({ name: task, values }));
  const pct = (key) => [
    { name: "p50", values: data[key].p50 },
    { name: "p95", values: data[key].p95 },
  ];
  const secs = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + "s";
  const summary = (key) => {
    const o = data[key].overall;
    return `p50 ${seconds(o.p50)} · p95 ${seconds(o.p95)} · n ${o.n}`;
  };
  $("#charts").replaceChildren(
    lineChart("per minute", counts, m, count),
    lineChart("queue depth", depth.length ? depth : [{ name: "all tasks", values: Array(m).fill(0) }], m, count),
    lineChart(`time in queue (${summary("queue_wait")})`, pct("queue_wait"), m, secs),
    lineChart(`run time (${summary("run_time")})`, pct("run_time"), m, secs),
  );
  $("#charts-note").textContent = data.truncated ? `only the first ${data.scanned} events of the hour were read` : "";
}

async function refreshCharts() {
  try {
    renderCharts(await api("/ui/api/charts?minutes=60"));
  } catch (error) {
    $("#charts-note").textContent = `charts: ${error.message}`;
  }
}
