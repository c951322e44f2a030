// Charts drawn as plain SVG: every axis labelled with its unit, every bar and point carrying its
// number (on hover and as data-* for tests), bars that lead to the cases behind them.

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const fmt = (n) => Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });

function niceStep(max, ticks = 5) {
  if (max <= 0) return 1;
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  const nice = scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10;
  return Math.max(nice * power, 1);
}

function linearTicks(max) {
  const step = niceStep(max);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const out = [];
  for (let v = 0; v <= top + 1e-9; v += step) out.push(v);
  return { ticks: out, top };
}

// a label cut to the room it has (about 6.6 px a character at 12 px); the whole of it is in the tooltip
function fit(label, room) {
  const chars = Math.max(4, Math.floor(room / 6.6));
  return label.length > chars ? label.slice(0, chars - 1) + "…" : label;
}

function wrapLink(href, el, label) {
  if (!href) return el;
  const a = s("a", { href, "aria-label": label });
  a.append(el);
  return a;
}

// Horizontal bars: one row per item, label left, number right; `href` makes a row a link.
// items: [{label, value, href?, detail?, text? (the number as written; default the value), tone?: "bad"|"good"|"warn"}]
export function hbars({ items, unit, title, width = 680, labelWidth = 170, valueWidth = 110, emptyText = "nothing to show" }) {
  const row = 26;
  const top = title ? 28 : 8;
  const plot = width - labelWidth - valueWidth - 10;
  const height = top + Math.max(items.length, 1) * row + 34;
  const max = Math.max(0, ...items.map((i) => i.value || 0));
  const { ticks, top: axisTop } = linearTicks(max);
  const x = (v) => labelWidth + (axisTop ? (v / axisTop) * plot : 0);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart hbars", role: "img",
    "aria-label": title || unit });
  if (title) svg.append(s("text", { x: 0, y: 16, class: "chart-title" }, title));
  const axisY = top + Math.max(items.length, 1) * row;
  for (const t of ticks) {
    svg.append(s("line", { x1: x(t), x2: x(t), y1: top - 4, y2: axisY, class: "grid" }));
    svg.append(s("text", { x: x(t), y: axisY + 14, class: "tick", "text-anchor": "middle" }, fmt(t)));
  }
  svg.append(s("text", { x: labelWidth + plot / 2, y: axisY + 30, class: "axis-label", "text-anchor": "middle" }, unit));
  if (!items.length) {
    svg.append(s("text", { x: labelWidth + 8, y: top + 17, class: "muted" }, emptyText));
  }
  items.forEach((item, i) => {
    const y = top + i * row;
    const g = s("g", { class: `bar ${item.tone || ""}`, dataset: { testid: "bar", label: item.label, value: item.value } },
      s("title", {}, `${item.label}: ${fmt(item.value)} ${unit}${item.detail ? " — " + item.detail : ""}`),
      s("rect", { x: 0, y, width, height: row, class: "hit" }),
      s("text", { x: labelWidth - 8, y: y + 17, "text-anchor": "end", class: "label" }, fit(item.label, labelWidth - 12)),
      s("rect", { x: labelWidth, y: y + 4, width: Math.max(x(item.value) - labelWidth, item.value ? 2 : 0), height: row - 8,
        class: "fill" }),
      s("text", { x: x(item.value) + 6, y: y + 17, class: "value" }, item.text ?? fmt(item.value)));
    svg.append(wrapLink(item.href, g, `${item.label}: ${fmt(item.value)} ${unit}`));
  });
  return svg;
}

// Vertical bars, largest first, with an optional cumulative-share line (a Pareto chart).
// items: [{label, value, href?, cumulative? (0..1)}]
export function pareto({ items, unit, title, width = 680, height = 300, cumulative = true }) {
  const left = 56, right = cumulative ? 62 : 12, top = title ? 30 : 10, bottom = 74;
  const plotW = width - left - right, plotH = height - top - bottom;
  const max = Math.max(0, ...items.map((i) => i.value || 0));
  const { ticks, top: axisTop } = linearTicks(max);
  const y = (v) => top + plotH - (axisTop ? (v / axisTop) * plotH : 0);
  const band = items.length ? plotW / items.length : plotW;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart pareto", role: "img",
    "aria-label": title || unit });
  if (title) svg.append(s("text", { x: 0, y: 16, class: "chart-title" }, title));
  for (const t of ticks) {
    svg.append(s("line", { x1: left, x2: left + plotW, y1: y(t), y2: y(t), class: "grid" }));
    svg.append(s("text", { x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, fmt(t)));
  }
  svg.append(s("text", { x: 14, y: top + plotH / 2, class: "axis-label", "text-anchor": "middle",
    transform: `rotate(-90 14 ${top + plotH / 2})` }, unit));
  if (!items.length) svg.append(s("text", { x: left + 8, y: top + 20, class: "muted" }, "nothing to show"));
  items.forEach((item, i) => {
    const x0 = left + i * band;
    const w = Math.max(band * 0.7, 1);
    const g = s("g", { class: "bar", dataset: { testid: "bar", label: item.label, value: item.value } },
      s("title", {}, `${item.label}: ${fmt(item.value)} ${unit}` +
        (item.cumulative != null ? ` (cumulative ${Math.round(item.cumulative * 100)}%)` : "")),
      s("rect", { x: x0, y: top, width: band, height: plotH + bottom, class: "hit" }),
      s("rect", { x: x0 + (band - w) / 2, y: y(item.value), width: w, height: top + plotH - y(item.value), class: "fill" }),
      s("text", { x: x0 + band / 2, y: y(item.value) - 4, class: "value", "text-anchor": "middle" }, fmt(item.value)),
      s("text", { x: x0 + band / 2, y: top + plotH + 12, class: "label", "text-anchor": "end",
        transform: `rotate(-35 ${x0 + band / 2} ${top + plotH + 12})` }, fit(item.label, 90)));
    svg.append(wrapLink(item.href, g, `${item.label}: ${fmt(item.value)} ${unit}`));
  });
  svg.append(s("line", { x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH, class: "axis" }));
  if (cumulative && items.length && items.every((i) => i.cumulative != null)) {
    const cy = (share) => top + plotH - share * plotH;
    const points = items.map((item, i) => `${left + i * band + band / 2},${cy(item.cumulative)}`).join(" ");
    svg.append(s("polyline", { points, class: "cumulative" }));
    items.forEach((item, i) => svg.append(s("circle", { cx: left + i * band + band / 2, cy: cy(item.cumulative), r: 3,
      class: "cumulative-point" })));
    for (const share of [0, 0.5, 0.8, 1]) {
      svg.append(s("text", { x: left + plotW + 6, y: cy(share) + 4, class: "tick" }, `${share * 100}%`));
    }
    svg.append(s("line", { x1: left, x2: left + plotW, y1: cy(0.8), y2: cy(0.8), class: "eighty" }));
    svg.append(s("text", { x: width - 18, y: top + plotH / 2, class: "axis-label", "text-anchor": "middle",
      transform: `rotate(90 ${width - 18} ${top + plotH / 2})` }, "cumulative share"));
  }
  return svg;
}

// Rates over time on a log scale (PPM spans 0 to a million), with the target drawn across.
// series: [{name, color, points: [{label, value|null, detail?}]}]; labels are the periods
export function rateLines({ periods, series, target, unit = "PPM", title, width = 680, height = 280 }) {
  const left = 70, right = 16, top = title ? 30 : 12, bottom = 46;
  const plotW = width - left - right, plotH = height - top - bottom;
  const values = series.flatMap((line) => line.points.map((p) => p.value)).filter((v) => v != null);
  const max = Math.max(target * 10, ...values);
  const decades = Math.ceil(Math.log10(max + 1));
  // log10(1 + v): 0 sits on the floor and every decade above 1 gets the same height
  const y = (v) => top + plotH - (Math.log10(1 + v) / decades) * plotH;
  const step = periods.length > 1 ? plotW / (periods.length - 1) : 0;
  const x = (i) => left + (periods.length > 1 ? i * step : plotW / 2);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart lines", role: "img",
    "aria-label": title || unit });
  if (title) svg.append(s("text", { x: 0, y: 16, class: "chart-title" }, title));
  // 0, then every decade from 10 (1 would sit on top of 0)
  const ticks = [0];
  for (let d = 1; d <= decades; d++) ticks.push(10 ** d);
  for (const t of ticks) {
    if (t > 10 ** decades) continue;
    svg.append(s("line", { x1: left, x2: left + plotW, y1: y(t), y2: y(t), class: "grid" }));
    svg.append(s("text", { x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, fmt(t)));
  }
  svg.append(s("text", { x: 14, y: top + plotH / 2, class: "axis-label", "text-anchor": "middle",
    transform: `rotate(-90 14 ${top + plotH / 2})` }, `${unit} (log scale)`));
  const labelEvery = Math.max(1, Math.ceil(periods.length / 10));
  periods.forEach((p, i) => {
    if (i % labelEvery === 0 || i === periods.length - 1) {
      svg.append(s("text", { x: x(i), y: top + plotH + 16, class: "tick", "text-anchor": "middle" }, p));
    }
  });
  svg.append(s("line", { x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH, class: "axis" }));
  svg.append(s("line", { x1: left, x2: left + plotW, y1: y(target), y2: y(target), class: "target",
    dataset: { testid: "target-line", value: target } }));
  svg.append(s("text", { x: left + plotW - 4, y: y(target) - 5, class: "target-label", "text-anchor": "end" },
    `target < ${fmt(target)} ${unit}`));
  for (const line of series) {
    let path = "";
    line.points.forEach((p, i) => {
      if (p.value == null) return;
      path += `${path && line.points[i - 1] && line.points[i - 1].value != null ? "L" : "M"}${x(i)},${y(p.value)} `;
    });
    svg.append(s("path", { d: path, class: "series", stroke: line.color }));
    line.points.forEach((p, i) => {
      if (p.value == null) return;
      const over = p.value >= target;
      svg.append(s("circle", { cx: x(i), cy: y(p.value), r: 4, fill: line.color, class: over ? "point over" : "point",
        dataset: { testid: "point", series: line.name, period: periods[i], value: p.value } },
        s("title", {}, `${line.name}, ${periods[i]}: ${fmt(p.value)} ${unit}${p.detail ? " — " + p.detail : ""}`)));
    });
  }
  if (series.length > 1) {
    const legend = s("g", { class: "legend" });
    series.forEach((line, i) => {
      const lx = left + (i % 4) * 150, ly = height - 8 - Math.floor(i / 4) * 0;
      legend.append(s("rect", { x: lx, y: ly - 9, width: 10, height: 10, fill: line.color }),
        s("text", { x: lx + 14, y: ly, class: "tick" }, line.name));
    });
    svg.append(legend);
  }
  return svg;
}

// One case's steps over time: a lane per step from opened to done (or to the moment asked
// about), its due time marked, and a tick for each event.
export function stepLanes({ steps, events, from, to, width = 900 }) {
  const left = 90, right = 16, lane = 26, top = 10;
  const names = Object.keys(steps);
  const height = top + names.length * lane + 56;
  const t0 = from.getTime(), t1 = Math.max(to.getTime(), t0 + 60_000);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart lanes", role: "img",
    "aria-label": "the case's four steps over time" });
  names.forEach((name, i) => {
    const st = steps[name];
    const y = top + i * lane;
    svg.append(s("text", { x: left - 8, y: y + 17, class: "label", "text-anchor": "end" }, name.replace("_", " ")));
    if (!st.opened) return;
    const end = st.done ? new Date(st.done).getTime() : t1;
    svg.append(s("rect", { x: x(new Date(st.opened).getTime()), y: y + 5, height: lane - 10,
      width: Math.max(x(end) - x(new Date(st.opened).getTime()), 2), class: `lane ${st.status}` },
      s("title", {}, `${name}: ${st.status}, opened ${st.opened}${st.due ? ", due " + st.due : ""}${st.done ? ", done " + st.done : ""}`)));
    if (st.due) {
      const dx = x(Math.min(new Date(st.due).getTime(), t1));
      svg.append(s("line", { x1: dx, x2: dx, y1: y + 2, y2: y + lane - 2, class: "due" }, s("title", {}, `due ${st.due}`)));
    }
  });
  const axisY = top + names.length * lane + 6;
  svg.append(s("line", { x1: left, x2: width - right, y1: axisY, y2: axisY, class: "axis" }));
  for (const e of events) {
    const ex = x(new Date(e.time).getTime());
    svg.append(s("line", { x1: ex, x2: ex, y1: axisY - 4, y2: axisY + 4, class: "event-tick" }, s("title", {}, `${e.time} ${e.type}`)));
  }
  const pad = (n) => String(n).padStart(2, "0");
  const when = (t) => { const d = new Date(t); return `${d.getMonth() + 1}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`; };
  for (let k = 0; k <= 4; k++) {
    const t = t0 + ((t1 - t0) * k) / 4;
    svg.append(s("text", { x: x(t), y: axisY + 18, class: "tick", "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle" }, when(t)));
  }
  svg.append(s("text", { x: left, y: axisY + 38, class: "axis-label" }, "time (bars: a step open; red line: its due time; ticks: events)"));
  return svg;
}

export const PALETTE = ["#1f6feb", "#d9822b", "#2da44e", "#8250df", "#bf3989", "#0a7ea4", "#9a6700", "#57606a"];
