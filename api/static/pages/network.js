// The service network: dispatch alarms as they happen, each outlet's load, technicians whose
// permit is on warning or eliminated. Each section shows when its route exists.
//
// Reads: GET /network/alarms?as_of&limit     -> {items: [{time, case_id, outlet_id, level, action?, accept_by?, reason?}], total}
//        GET /network/outlets?as_of          -> {items: [{outlet_id, name?, tier?, daily_capacity, open_jobs}]}
//        GET /network/technicians?as_of      -> {items: [{technician_id, name?, outlet_id, level?, status, balance?}]}

import { availableRoutes, get, state } from "../lib/api.js";
import { hbars } from "../lib/charts.js";
import { currentRoute, fmtInt, fmtTime, h, link } from "../lib/dom.js";

const ALARMS = "/network/alarms", OUTLETS = "/network/outlets", TECHNICIANS = "/network/technicians";
const REFRESH_MS = 10_000;
let timer = null;

const itemsOf = (answer) => answer.items || answer.rows || [];

function alarmTable(items) {
  if (!items.length) return h("p", { class: "muted" }, "No dispatch alarms.");
  return h("table", { class: "numbers-table", dataset: { testid: "alarms" } },
    h("thead", {}, h("tr", {}, ["when", "case", "outlet", "level", "what the engine did", "accept by"].map((c) => h("th", {}, c)))),
    h("tbody", {}, items.map((a) => h("tr", { class: a.level >= 2 ? "bad-text" : "", dataset: { testid: "alarm", case: a.case_id } },
      h("td", {}, fmtTime(a.time)),
      h("td", {}, a.case_id ? h("a", { href: link("case", [a.case_id]) }, a.case_id) : "—"),
      h("td", {}, h("a", { href: link("overview", [], { outlet_id: a.outlet_id }) }, a.outlet_id)),
      h("td", {}, a.level === 2 ? "2: escalated" : "1: paged"),
      h("td", {}, a.action || a.reason || "—"),
      h("td", {}, fmtTime(a.accept_by))))));
}

async function alarmsSection() {
  const answer = await get(ALARMS, { limit: 50 }, { knownAt: false });
  const items = itemsOf(answer);
  return h("section", { class: "panel", dataset: { testid: "alarm-section" } },
    h("h2", {}, "Dispatch alarms ", h("span", { class: "muted" },
      state.asOf ? `up to ${fmtTime(state.asOf)}` : "as they happen (refreshed every 10 s)")),
    h("p", {}, `${fmtInt(answer.total ?? items.length)} alarms; jobs not picked up in time, newest first.`),
    alarmTable(items));
}

async function outletsSection() {
  const items = itemsOf(await get(OUTLETS, {}, { knownAt: false }));
  const loads = items.map((o) => ({ ...o, load: o.daily_capacity ? o.open_jobs / o.daily_capacity : null }))
    .sort((a, b) => (b.load ?? -1) - (a.load ?? -1) || b.open_jobs - a.open_jobs).slice(0, 25);
  return h("section", { class: "panel", dataset: { testid: "outlet-section" } },
    h("h2", {}, "Outlet load"),
    h("p", { class: "muted" }, "Open jobs against each outlet's daily capacity, busiest first; a bar lists the outlet's leaks."),
    hbars({ unit: "% of daily capacity in open jobs", labelWidth: 220, items: loads.map((o) => ({
      label: o.name ? `${o.outlet_id} ${o.name}` : o.outlet_id,
      value: o.load == null ? 0 : Math.round(o.load * 100),
      tone: o.load >= 1 ? "bad" : o.load >= 0.8 ? "warn" : "good",
      detail: `${fmtInt(o.open_jobs)} open jobs, capacity ${fmtInt(o.daily_capacity)} a day`,
      href: link("overview", [], { outlet_id: o.outlet_id }),
    })) }));
}

async function techniciansSection() {
  const items = itemsOf(await get(TECHNICIANS, {}, { knownAt: false }))
    .filter((t) => t.status === "warning" || t.status === "eliminated")
    .sort((a, b) => (a.status === b.status ? (a.balance ?? 0) - (b.balance ?? 0) : a.status === "eliminated" ? -1 : 1));
  return h("section", { class: "panel", dataset: { testid: "technician-section" } },
    h("h2", {}, "Technicians on warning or eliminated"),
    items.length ? h("table", { class: "numbers-table", dataset: { testid: "technicians" } },
      h("thead", {}, h("tr", {}, ["technician", "outlet", "level", "permit", "points"].map((c) => h("th", {}, c)))),
      h("tbody", {}, items.map((t) => h("tr", { class: t.status === "eliminated" ? "bad-text" : "warn-text",
        dataset: { testid: "technician", status: t.status } },
      h("td", {}, t.name ? `${t.technician_id} ${t.name}` : t.technician_id),
      h("td", {}, t.outlet_id), h("td", {}, t.level || "—"), h("td", {}, t.status),
      h("td", {}, t.balance ?? t.points ?? "—")))))
      : h("p", { class: "muted" }, "Every technician's permit is in good standing."));
}

export default {
  id: "network",
  title: "Network",
  anyRoute: [ALARMS, OUTLETS, TECHNICIANS],
  routes: [ALARMS, OUTLETS, TECHNICIANS],
  knownAt: false,
  async render(el, route, { stillWanted }) {
    const routes = await availableRoutes();
    const has = (path) => !routes || routes.has(path);
    el.append(h("h1", {}, "Service network"));
    const sections = await Promise.all([
      has(ALARMS) ? alarmsSection() : null,
      has(OUTLETS) ? outletsSection() : null,
      has(TECHNICIANS) ? techniciansSection() : null,
    ]);
    el.append(...sections.filter(Boolean));
    clearTimeout(timer);
    if (!state.asOf && has(ALARMS)) {
      // live: alarms as they happen; stops when the page is left or a past moment is asked for
      timer = setTimeout(() => {
        if (stillWanted() && currentRoute().page === "network" && !state.asOf) window.dispatchEvent(new HashChangeEvent("hashchange"));
      }, REFRESH_MS);
    }
  },
};
