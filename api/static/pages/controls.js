// The three controls over time: complaint, dissatisfaction and omission PPM per day or week,
// against the 10 PPM line, overall or by region, outlet or product line.
// /controls answers one period at a time, so the chart asks it once per period.

import { get, state } from "../lib/api.js";
import { PALETTE, rateLines } from "../lib/charts.js";
import { fmtDay, fmtInt, fmtPpm, fmtTime, go, h, link, paramsObject } from "../lib/dom.js";

const MEASURES = [
  ["complaint", "Complaint rate", "services with a complaint filed"],
  ["dissatisfaction", "Dissatisfaction rate", "services whose reached callback said dissatisfied"],
  ["omission", "Omission rate", "services where one of the four steps became overdue"],
];
const GROUP_WORDS = { region: "region", outlet: "outlet", product_line: "product line" };
const TOP = 5;
const UNKNOWN = "(not recorded)";

// periods ending with the one that holds `at`: local days, or weeks from Monday
export function periods(at, grain, count) {
  const start = new Date(at);
  start.setHours(0, 0, 0, 0);
  if (grain === "week") start.setDate(start.getDate() - ((start.getDay() + 6) % 7));
  const out = [];
  for (let i = count - 1; i >= 0; i--) {
    const from = new Date(start);
    const to = new Date(start);
    if (grain === "week") {
      from.setDate(from.getDate() - 7 * i);
      to.setDate(to.getDate() - 7 * i + 7);
    } else {
      from.setDate(from.getDate() - i);
      to.setDate(to.getDate() - i + 1);
    }
    out.push({ from, to, label: grain === "week" ? `wk ${fmtDay(from).slice(5)}` : fmtDay(from).slice(5) });
  }
  return out;
}

function selector(name, label, options, value) {
  return h("label", {}, label, " ", h("select", { name },
    options.map(([v, text]) => h("option", { value: v, selected: String(value) === String(v) }, text))));
}

export default {
  id: "controls",
  title: "Three controls",
  routes: ["/controls"],
  knownAt: true,
  async render(el, route) {
    const p = paramsObject(route.params);
    const grain = p.grain === "week" ? "week" : "day";
    const count = Math.min(Math.max(Number(p.periods) || (grain === "week" ? 8 : 14), 1), 60);
    const by = GROUP_WORDS[p.by] ? p.by : "";
    const group = by ? p.group || "" : "";
    const at = state.asOf ? new Date(state.asOf) : new Date();
    const spans = periods(at, grain, count);
    const range = { from: spans[0].from.toISOString(), to: spans[spans.length - 1].to.toISOString() };
    const [whole, ...each] = await Promise.all([
      get("/controls", { ...range, by: by || undefined }),
      ...spans.map((span) => get("/controls", { from: span.from.toISOString(), to: span.to.toISOString(), by: by || undefined })),
    ]);
    const target = whole.target_ppm;
    const ranked = by ? whole.groups.map((g) => g[by]).filter((g) => g != null) : [];
    const shown = by ? (group ? [group] : ranked.slice(0, TOP)) : [null];
    const pick = (answer, name) => (name === null ? answer.total : (answer.groups || []).find((g) => g[by] === name));
    const seriesName = (name) => (name === null ? "all services" : name);

    const form = h("form", { class: "filters", onsubmit: (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(event.target).entries());
      if (data.by !== by) delete data.group;
      go("controls", [], data);
    } },
    selector("grain", "per", [["day", "day"], ["week", "week"]], grain),
    selector("periods", "over the last", [7, 14, 30, 60].map((n) => [n, `${n} ${grain}s`]).concat(
      [[count, `${count} ${grain}s`]]).filter((o, i, all) => all.findIndex((x) => x[0] === o[0]) === i), count),
    selector("by", "by", [["", "all services"], ["region", "region"], ["outlet", "outlet"], ["product_line", "product line"]], by),
    by ? selector("group", GROUP_WORDS[by], [["", `top ${TOP} by services`], ...ranked.map((g) => [g, g])], group) : null,
    h("button", { type: "submit" }, "Show"));

    el.append(
      h("h1", {}, "Three controls"),
      h("p", { class: "lead" }, `Each rate in parts per million (PPM) of services begun in the period, judged as of `,
        `${fmtTime(at.toISOString())}; the target is under ${target} PPM. Points at or over the target are outlined in red.`),
      form,
    );
    const charts = h("div", { class: "grid3" });
    for (const [measure, title, meaning] of MEASURES) {
      const series = shown.map((name, i) => ({
        name: seriesName(name),
        color: PALETTE[i % PALETTE.length],
        points: each.map((answer) => {
          const rates = pick(answer, name);
          if (!rates || rates.services === 0) return { value: null };
          const m = rates[measure];
          return { value: m.ppm, detail: `${fmtInt(m.count)} of ${fmtInt(rates.services)} services` };
        }),
      }));
      const overall = pick(whole, shown.length === 1 ? shown[0] : null) || whole.total;
      charts.append(h("section", { class: "panel", dataset: { testid: `control-${measure}` } },
        h("h2", {}, title, " ", h("span", { class: overall[measure].within_target === false ? "bad-text" : "good-text",
          dataset: { testid: "range-ppm" } }, fmtPpm(overall[measure].ppm))),
        h("p", { class: "muted" }, `${meaning}; ${fmtInt(overall[measure].count)} of ${fmtInt(overall.services)} services over the range`),
        rateLines({ periods: spans.map((s) => s.label), series, target, unit: "PPM" })));
    }
    el.append(charts);

    const focus = shown.length === 1 ? shown[0] : null;
    el.append(h("section", { class: "panel" },
      h("h2", {}, `Per ${grain}: ${seriesName(focus)}`),
      h("table", { class: "numbers-table", dataset: { testid: "period-table" } },
        h("thead", {}, h("tr", {}, h("th", {}, grain), h("th", {}, "services"),
          MEASURES.map(([, title]) => h("th", {}, title.replace(" rate", ""))))),
        h("tbody", {}, spans.map((span, i) => {
          const rates = pick(each[i], focus);
          return h("tr", { dataset: { testid: "period-row", from: span.from.toISOString() } },
            h("td", {}, span.label), h("td", { dataset: { testid: "services" } }, fmtInt(rates ? rates.services : 0)),
            MEASURES.map(([measure]) => {
              const m = rates && rates[measure];
              return h("td", { class: m && m.within_target === false ? "bad-text" : "", dataset: { testid: measure } },
                m ? `${fmtInt(m.count)} · ${fmtPpm(m.ppm)}` : "—");
            }));
        })))));

    if (by) {
      el.append(h("section", { class: "panel" },
        h("h2", {}, `By ${GROUP_WORDS[by]}, over the whole range`),
        h("table", { class: "numbers-table", dataset: { testid: "group-table" } },
          h("thead", {}, h("tr", {}, h("th", {}, GROUP_WORDS[by]), h("th", {}, "services"),
            MEASURES.map(([, title]) => h("th", {}, title.replace(" rate", ""))))),
          h("tbody", {}, whole.groups.map((g) => h("tr", { dataset: { testid: "group-row", group: g[by] ?? "" } },
            h("td", {}, g[by] == null ? h("span", { class: "muted", title: "calls that asked for service and were never recorded as cases" }, UNKNOWN)
              : h("a", { href: link("controls", [], { ...p, group: g[by] }) }, g[by])),
            h("td", {}, fmtInt(g.services)),
            MEASURES.map(([measure]) => h("td", { class: g[measure].within_target === false ? "bad-text" : "good-text" },
              fmtPpm(g[measure].ppm)))))))));
    }
  },
};
