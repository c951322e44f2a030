// Departments (design, manufacturing, quality): the defect Pareto by fault code and by cause for
// a model or product line, failures by production batch and by plant; every bar leads to the
// cases behind it (#/quality/cases?<the bar's filters>).
//
// Reads: GET /quality/defects/pareto?by=fault_code|cause&from&to&as_of&model&product_line
//        GET /quality/defects/batches?by=batch|plant&from&to&as_of&model&product_line
//            rows: {model, production_batch, plant | plant, failures, failures_in_shipped_batches, shipped,
//                   failure_rate_ppm, filters} (completed repairs: filters carry job=repair)
//        GET /quality/defects/cases?from&to&as_of&<a row's filters>&limit&offset
// each row carries `filters`: the query that lists its cases.

import { get, state } from "../lib/api.js";
import { hbars, pareto } from "../lib/charts.js";
import { fmtInt, fmtPpm, fmtTime, go, h, link, paramsObject } from "../lib/dom.js";

const DAY = 86_400_000;
const PAGE_SIZE = 100;

function windowOf(p) {
  const days = Math.min(Math.max(Number(p.days) || 30, 1), 730);
  const to = state.asOf ? new Date(state.asOf) : new Date();
  return { days, from: new Date(to.getTime() - days * DAY).toISOString() };
}

// a batch's or plant's failure rate: the API counts only the failures of batches whose shipments
// are known (failures_in_shipped_batches), per million units of those batches shipped
function rateDetail(r) {
  if (r.failure_rate_ppm == null) return "shipments unknown: no failure rate";
  const part = r.failures_in_shipped_batches !== r.failures
    ? ` (${fmtInt(r.failures_in_shipped_batches)} of the ${fmtInt(r.failures)} failures are of batches with known shipments)` : "";
  return `${fmtPpm(r.failure_rate_ppm)}: ${fmtInt(r.failures_in_shipped_batches)} failures per ${fmtInt(r.shipped)} units shipped${part}`;
}

function casesLink(filters, days) {
  return link("quality", ["cases"], { ...filters, days });
}

async function listCases(el, p) {
  const { days, from } = windowOf(p);
  const offset = Number(p.offset || 0);
  const filters = { ...p };
  delete filters.days; delete filters.offset;
  const answer = await get("/quality/defects/cases", { ...filters, from, limit: PAGE_SIZE, offset }, { knownAt: false });
  const described = Object.entries(filters).map(([k, v]) => `${k.replace("_", " ")} ${v}`).join(", ");
  el.append(
    h("p", {}, h("a", { href: link("quality", [], { days, model: p.model, product_line: p.product_line }) }, "← defects")),
    h("h1", {}, "The cases behind the bar"),
    h("p", { class: "lead", dataset: { testid: "case-list-total" } },
      `${fmtInt(answer.total)} completed services with ${described || "any details"}, in the last ${days} days.`),
    h("table", { class: "numbers-table", dataset: { testid: "case-list" } },
      h("thead", {}, h("tr", {}, ["case", "completed", "job", "product line", "model", "batch", "plant", "fault code", "cause",
        "outlet", "technician"].map((c) => h("th", {}, c)))),
      h("tbody", {}, answer.rows.map((r) => h("tr", { dataset: { testid: "case-row", case: r.case_id } },
        h("td", {}, h("a", { href: link("case", [r.case_id]) }, r.case_id)),
        h("td", {}, fmtTime(r.completed)), h("td", {}, r.job || "—"), h("td", {}, r.product_line), h("td", {}, r.model),
        h("td", {}, r.production_batch || "—"), h("td", {}, r.plant || "—"), h("td", {}, r.fault_code),
        h("td", {}, r.cause), h("td", {}, r.outlet_id), h("td", {}, r.technician_id))))),
    h("p", { class: "pager" },
      offset > 0 ? h("a", { href: link("quality", ["cases"], { ...p, offset: Math.max(0, offset - PAGE_SIZE) }) }, "← earlier") : null, " ",
      offset + PAGE_SIZE < answer.total ? h("a", { href: link("quality", ["cases"], { ...p, offset: offset + PAGE_SIZE }) }, "later →") : null),
  );
}

export default {
  id: "quality",
  title: "Defects",
  routes: ["/quality/defects/pareto", "/quality/defects/batches", "/quality/defects/cases"],
  knownAt: false,
  async render(el, route) {
    const p = paramsObject(route.params);
    if (route.args[0] === "cases") return listCases(el, p);
    const { days, from } = windowOf(p);
    const scope = { model: p.model, product_line: p.product_line };
    const q = { ...scope, from };
    const opts = { knownAt: false };
    const [faults, causes, batches, plants] = await Promise.all([
      get("/quality/defects/pareto", { ...q, by: "fault_code" }, opts),
      get("/quality/defects/pareto", { ...q, by: "cause" }, opts),
      get("/quality/defects/batches", { ...q, by: "batch" }, opts),
      get("/quality/defects/batches", { ...q, by: "plant" }, opts),
    ]);
    const what = p.model ? `model ${p.model}` : p.product_line ? `product line ${p.product_line}` : "every product";
    const bars = (rows, key) => rows.map((r) => ({
      label: String(r[key] ?? "unknown"), value: r.count, cumulative: r.cumulative_share,
      href: casesLink(r.filters || { ...scope, [key]: r[key] }, days),
    }));
    el.append(
      h("h1", {}, `Defects: ${what}`),
      h("form", { class: "filters", onsubmit: (event) => {
        event.preventDefault();
        go("quality", [], Object.fromEntries(new FormData(event.target).entries()));
      } },
      h("label", {}, "product line ", h("input", { name: "product_line", value: p.product_line || "", size: 14, placeholder: "any" })),
      h("label", {}, "model ", h("input", { name: "model", value: p.model || "", size: 14, placeholder: "any" })),
      h("label", {}, "last ", h("input", { name: "days", type: "number", min: 1, max: 730, value: days, size: 4 }), " days"),
      h("button", { type: "submit" }, "Show")),
      h("p", { class: "lead" }, `${fmtInt(faults.total)} completed services in the last ${days} days. Click a bar for the cases behind it.`),
      h("div", { class: "grid2" },
        h("section", { class: "panel", dataset: { testid: "pareto-fault_code" } }, h("h2", {}, "Pareto by fault code"),
          pareto({ items: bars(faults.rows.slice(0, 20), "fault_code"), unit: "completed services" })),
        h("section", { class: "panel", dataset: { testid: "pareto-cause" } }, h("h2", {}, "Pareto by cause"),
          pareto({ items: bars(causes.rows, "cause"), unit: "completed services" }))),
      h("div", { class: "grid2" },
        h("section", { class: "panel", dataset: { testid: "batches" } }, h("h2", {}, "Failures by production batch"),
          hbars({ unit: "failures (completed repairs)", labelWidth: 285, items: batches.rows.slice(0, 15).map((r) => ({
            label: [r.model, r.production_batch, r.plant].filter(Boolean).join(" · ") || "unknown batch",
            value: r.failures,
            detail: rateDetail(r),
            href: casesLink(r.filters || { ...scope, model: r.model, production_batch: r.production_batch, plant: r.plant }, days),
          })) })),
        h("section", { class: "panel", dataset: { testid: "plants" } }, h("h2", {}, "Failures by plant"),
          hbars({ unit: "failures (completed repairs)", items: plants.rows.map((r) => ({
            label: r.plant || "unknown plant", value: r.failures,
            detail: rateDetail(r),
            href: casesLink(r.filters || { ...scope, plant: r.plant }, days),
          })) }))),
    );
  },
};
