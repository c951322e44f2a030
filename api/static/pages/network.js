// The service network: dispatch alarms as they happen, each outlet's load today against its
// capacity, technicians whose permit is on warning or eliminated. Each section shows when its
// route exists; live (no as_of), the page reloads itself every 10 s.
//
// Reads (api/network.py; every route takes as_of, none known_at):
//   GET /alarms?state=all|open&limit -> {total, items: [{case_id, outlet_id, level (1 paged, 2 escalated), raised,
//        dispatched_at, accept_by, action, reason, state (open|resolved), resolved, resolution, open_minutes}]}
//        newest first
//   GET /outlets?limit -> {total, items: [{outlet_id, name, tier, daily_capacity,
//        today: {day, load, capacity, left, open_alarms}, technicians: {normal, warning, eliminated}}]}
//        (capacity: today's, the daily capacity scaled by the technicians' permits)
//   GET /technicians?status=warning|eliminated&limit -> {total, items: [{technician_id, outlet_id, name, level,
//        permit: {status, balance}}]}

import { availableRoutes, get, state } from "../lib/api.js";
import { hbars } from "../lib/charts.js";
import { currentRoute, fmtInt, fmtTime, h, link, words } from "../lib/dom.js";

const ALARMS = "/alarms", OUTLETS = "/outlets", TECHNICIANS = "/technicians";
const REFRESH_MS = 10_000;
const SHOWN_ALARMS = 50, SHOWN_OUTLETS = 25;
const opts = { knownAt: false };
let timer = null;

function alarmRow(a) {
  const open = a.state === "open";
  return h("tr", { class: open ? (a.level >= 2 ? "bad-text" : "warn-text") : "",
    dataset: { testid: "alarm", case: a.case_id, state: a.state, level: a.level } },
  h("td", {}, fmtTime(a.raised)),
  h("td", {}, a.case_id ? h("a", { href: link("case", [a.case_id]) }, a.case_id) : "—"),
  h("td", {}, h("a", { href: link("overview", [], { outlet_id: a.outlet_id }), title: "this outlet's leaks" }, a.outlet_id)),
  h("td", {}, a.level === 2 ? "2: escalated" : "1: paged"),
  h("td", { title: a.reason || "" }, words(a.action || "—")),
  h("td", {}, fmtTime(a.accept_by)),
  h("td", { dataset: { testid: "alarm-state" } }, open
    ? `open ${fmtInt(Math.round(a.open_minutes))} min`
    : `${words(a.resolution || "resolved")} ${fmtTime(a.resolved)}`));
}

async function alarmsSection() {
  const [open, recent] = await Promise.all([
    get(ALARMS, { state: "open", limit: 1 }, opts),
    get(ALARMS, { state: "all", limit: SHOWN_ALARMS }, opts),
  ]);
  const items = recent.items;
  return h("section", { class: "panel", dataset: { testid: "alarm-section" } },
    h("h2", {}, "Dispatch alarms ", h("span", { class: "muted" },
      state.asOf ? `up to ${fmtTime(state.asOf)}` : "as they happen (refreshed every 10 s)")),
    h("p", {},
      h("strong", { class: open.total ? "bad-text" : "good-text", dataset: { testid: "open-alarms" } }, fmtInt(open.total)),
      state.asOf ? " open then" : " open now",
      " (a job not accepted in time: the outlet is paged, then the job escalated); ",
      h("span", { dataset: { testid: "alarm-total" } }, fmtInt(recent.total)),
      ` raised in all`, recent.total > items.length ? `, the newest ${items.length} below.` : "."),
    items.length ? h("table", { class: "numbers-table", dataset: { testid: "alarms" } },
      h("thead", {}, h("tr", {}, ["raised", "case", "outlet", "level", "what the engine did", "accept by", state.asOf ? "then" : "now"]
        .map((c) => h("th", {}, c)))),
      h("tbody", {}, items.map(alarmRow)))
      : h("p", { class: "muted" }, "No dispatch alarms: every job was accepted in time."));
}

async function outletsSection() {
  const answer = await get(OUTLETS, { limit: 1000 }, opts);
  const share = (o) => (o.today.capacity ? o.today.load / o.today.capacity : o.today.load ? Infinity : 0);
  const busiest = [...answer.items].sort((a, b) => share(b) - share(a) || b.today.load - a.today.load ||
    a.outlet_id.localeCompare(b.outlet_id)).slice(0, SHOWN_OUTLETS);
  const day = answer.items.length ? answer.items[0].today.day : null;
  return h("section", { class: "panel", dataset: { testid: "outlet-section" } },
    h("h2", {}, "Outlet load today"),
    h("p", { class: "muted" }, `Jobs taken today against today's capacity (the daily capacity, less the share its `,
      `technicians on warning or eliminated permits may not take), busiest first`,
      day ? `; the network's day began ${fmtTime(day)}` : "",
      answer.total > busiest.length ? `; ${busiest.length} of ${fmtInt(answer.total)} outlets` : "",
      ". A bar lists the outlet's overdue steps."),
    hbars({ unit: "% of today's capacity taken", width: 1000, labelWidth: 330, valueWidth: 170, items: busiest.map((o) => {
      const s = share(o);
      return {
        label: `${o.outlet_id} ${o.name}`,
        value: o.today.capacity ? Math.round(s * 100) : 0,
        text: o.today.capacity ? `${Math.round(s * 100)}% · ${fmtInt(o.today.load)} of ${fmtInt(o.today.capacity)} jobs`
          : `no capacity · ${fmtInt(o.today.load)} jobs`,
        tone: s >= 1 ? "bad" : s >= 0.8 ? "warn" : "good",
        detail: `${fmtInt(o.today.load)} jobs of ${fmtInt(o.today.capacity)} today (daily capacity ${fmtInt(o.daily_capacity)})` +
          (o.today.open_alarms ? `, ${fmtInt(o.today.open_alarms)} open alarms` : ""),
        href: link("overview", [], { outlet_id: o.outlet_id }),
      };
    }) }));
}

async function techniciansSection() {
  const [eliminated, warning] = await Promise.all(["eliminated", "warning"].map((status) =>
    get(TECHNICIANS, { status, limit: 1000 }, opts)));
  const items = [...eliminated.items, ...warning.items.sort((a, b) => a.permit.balance - b.permit.balance)];
  return h("section", { class: "panel", dataset: { testid: "technician-section" } },
    h("h2", {}, "Technicians on warning or eliminated"),
    h("p", { class: "muted" }, `${fmtInt(eliminated.total)} eliminated (no new jobs), ${fmtInt(warning.total)} on warning ` +
      "(a reduced share of jobs); points fall with violations found on cases and rise with customer delight."),
    items.length ? h("table", { class: "numbers-table", dataset: { testid: "technicians" } },
      h("thead", {}, h("tr", {}, ["technician", "outlet", "level", "permit", "points"].map((c) => h("th", {}, c)))),
      h("tbody", {}, items.map((t) => h("tr", { class: t.permit.status === "eliminated" ? "bad-text" : "warn-text",
        dataset: { testid: "technician", id: t.technician_id, status: t.permit.status } },
      h("td", {}, t.name ? `${t.technician_id} ${t.name}` : t.technician_id),
      h("td", {}, t.outlet_id || "—"), h("td", {}, t.level || "—"), h("td", {}, t.permit.status),
      h("td", { dataset: { testid: "points" } }, fmtInt(t.permit.balance))))))
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
