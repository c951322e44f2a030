// The loop at a glance: the four steps with open and overdue counts, and the leak list,
// filterable by stage, region, outlet and owner, each leak leading to its case.

import { get, state } from "../lib/api.js";
import { hbars } from "../lib/charts.js";
import { STAGES, STAGE_TITLES, fmtHours, fmtInt, fmtTime, go, h, link, paramsObject } from "../lib/dom.js";

const PAGE_SIZE = 50;

async function groupsOf(by) {
  // the regions and outlets that had services in the last 90 days, for the filters' suggestions
  try {
    const to = state.asOf ? new Date(state.asOf) : new Date();
    const from = new Date(to.getTime() - 90 * 86_400_000);
    const answer = await get("/controls", { by, from: from.toISOString() }, { knownAt: false });
    return (answer.groups || []).map((g) => g[by]).filter(Boolean).sort();
  } catch (_) {
    return [];
  }
}

function stepCard(stage, summary, filters) {
  const open = summary.open[stage];
  const leaked = summary.leaks[stage];
  return h("a", { class: `card step ${leaked ? "bad" : "good"} ${filters.stage === stage ? "selected" : ""}`,
    href: link("overview", [], { ...filters, stage, offset: 0 }), dataset: { testid: `step-${stage}` } },
  h("div", { class: "card-title" }, STAGE_TITLES[stage]),
  h("div", { class: "numbers" },
    h("span", { class: "big", dataset: { testid: "open" } }, fmtInt(open)), h("span", { class: "unit" }, " open"),
    h("br"),
    h("span", { class: `big ${leaked ? "bad-text" : ""}`, dataset: { testid: "overdue" } }, fmtInt(leaked)),
    h("span", { class: "unit" }, " overdue")));
}

function filterForm(filters, regions, outlets) {
  const field = (name, label, options, placeholder) => h("label", {}, label,
    h("input", { name, value: filters[name] || "", list: options ? `${name}-options` : null, placeholder, size: 12 }),
    options ? h("datalist", { id: `${name}-options` }, options.map((o) => h("option", { value: o }))) : null);
  const stage = h("select", { name: "stage" }, h("option", { value: "" }, "every step"),
    STAGES.map((s) => h("option", { value: s, selected: filters.stage === s }, STAGE_TITLES[s])));
  return h("form", { class: "filters", dataset: { testid: "leak-filters" },
    onsubmit: (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(event.target).entries());
      go("overview", [], { ...data, offset: 0 });
    } },
  h("label", {}, "stage ", stage),
  field("region", "region ", regions, "any"),
  field("outlet_id", "outlet ", outlets, "any"),
  field("owner", "owner ", null, "anyone"),
  h("button", { type: "submit" }, "Filter"),
  h("a", { href: link("overview"), class: "reset" }, "clear"));
}

function leakTable(leaks, at) {
  if (!leaks.items.length) return h("p", { class: "muted", dataset: { testid: "no-leaks" } }, "Nothing leaked here.");
  return h("table", { class: "leaks", dataset: { testid: "leak-table" } },
    h("thead", {}, h("tr", {}, ["case", "step", "owner", "region", "outlet", "open since", "due", "overdue by", "age"]
      .map((c) => h("th", {}, c)))),
    h("tbody", {}, leaks.items.map((item) => {
      const age = (at - new Date(item.open_since).getTime()) / 3_600_000;
      return h("tr", { dataset: { testid: "leak", case: item.case_id || "", stage: item.stage } },
        h("td", {}, item.case_id ? h("a", { href: link("case", [item.case_id]) }, item.case_id)
          : h("span", { title: "a call that asked for service and has no case yet" }, `call ${item.call_id}`)),
        h("td", {}, STAGE_TITLES[item.stage]),
        h("td", {}, item.owner),
        h("td", {}, item.region || "—"),
        h("td", {}, item.outlet_id || "—"),
        h("td", {}, fmtTime(item.open_since)),
        h("td", {}, fmtTime(item.due)),
        h("td", { class: "bad-text" }, fmtHours(item.overdue_hours)),
        h("td", {}, fmtHours(age)));
    })));
}

export default {
  id: "overview",
  title: "Loop",
  routes: ["/loop/summary", "/loop/leaks"],
  knownAt: true,
  async render(el, route) {
    const filters = paramsObject(route.params);
    const offset = Number(filters.offset || 0);
    const query = { stage: filters.stage, region: filters.region, outlet_id: filters.outlet_id, owner: filters.owner };
    const [summary, leaks, regions, outlets] = await Promise.all([
      get("/loop/summary"),
      get("/loop/leaks", { ...query, limit: PAGE_SIZE, offset }),
      groupsOf("region"),
      groupsOf("outlet"),
    ]);
    const at = new Date(summary.as_of).getTime();
    const chosen = Object.entries(query).filter(([, v]) => v).map(([k, v]) => `${k.replace("_id", "")} ${v}`);
    el.append(
      h("h1", {}, "The four nothing-missed"),
      h("p", { class: "lead" }, `As of ${fmtTime(summary.as_of)}: `,
        h("strong", { dataset: { testid: "cases" } }, fmtInt(summary.cases)), " cases registered, ",
        h("strong", { dataset: { testid: "closed-loops" } }, fmtInt(summary.closed_loops)), " with every step closed, ",
        h("strong", { class: summary.leaked_total ? "bad-text" : "", dataset: { testid: "leaked-total" } },
          fmtInt(summary.leaked_total)), " steps overdue."),
      h("div", { class: "cards" }, STAGES.map((stage) => stepCard(stage, summary, query))),
      h("section", { class: "panel" },
        h("h2", {}, "Overdue steps by stage"),
        hbars({
          unit: "steps overdue (leaks)",
          items: STAGES.map((stage) => ({
            label: STAGE_TITLES[stage], value: summary.leaks[stage], tone: summary.leaks[stage] ? "bad" : "good",
            detail: `${fmtInt(summary.open[stage])} open`,
            href: link("overview", [], { ...query, stage, offset: 0 }),
          })),
        }),
        h("p", { class: "muted" }, "Click a bar to list the cases behind it.")),
      h("section", { class: "panel" },
        h("h2", {}, "Leaks ", chosen.length ? h("span", { class: "muted" }, `(${chosen.join(", ")})`) : null),
        filterForm(query, regions, outlets),
        h("p", { dataset: { testid: "leak-total" } }, `${fmtInt(leaks.total)} overdue`,
          leaks.total > PAGE_SIZE ? `, showing ${offset + 1}–${Math.min(offset + PAGE_SIZE, leaks.total)}` : "",
          ", oldest due first."),
        leakTable(leaks, at),
        h("p", { class: "pager" },
          offset > 0 ? h("a", { href: link("overview", [], { ...query, offset: Math.max(0, offset - PAGE_SIZE) }) }, "← earlier") : null,
          " ",
          offset + PAGE_SIZE < leaks.total ? h("a", { href: link("overview", [], { ...query, offset: offset + PAGE_SIZE }) }, "later →") : null)),
    );
  },
};
