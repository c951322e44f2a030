// One case: where it stands at each of the four steps and who owns it, and its timeline.

import { get } from "../lib/api.js";
import { stepLanes } from "../lib/charts.js";
import { STAGES, STAGE_TITLES, add, fmtTime, h, link, words } from "../lib/dom.js";

const STATUS_WORDS = {
  done: "done", open: "open", overdue: "overdue (leaked)", not_required: "not required", not_due_yet: "not yet due",
};

function summarize(data) {
  // the facts' data in one line: nested objects flattened, long text cut
  const parts = [];
  const walk = (prefix, value) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
    } else if (value !== null && value !== undefined && value !== "") {
      let text = Array.isArray(value) ? value.join(", ") : String(value);
      if (text.length > 60) text = text.slice(0, 57) + "…";
      parts.push(`${prefix}: ${text}`);
    }
  };
  walk("", data);
  return parts.join(" · ");
}

export default {
  id: "case",
  title: null,
  routes: ["/cases/{case_id}"],
  knownAt: true,
  async render(el, route) {
    const caseId = route.args[0];
    if (!caseId) {
      el.append(h("h1", {}, "Open a case"), h("p", {}, "Type a case id in the box at the top."));
      return;
    }
    let found;
    try {
      found = await get(`/cases/${encodeURIComponent(caseId)}`);
    } catch (error) {
      if (error.status === 404) {
        el.append(h("h1", {}, `Case ${caseId}`), h("p", { class: "error", role: "alert" }, error.message));
        return;
      }
      throw error;
    }
    const profile = found.profile || {};
    const facts = [
      ["owner now", found.owner || "nobody: no step is open"],
      ["outlet", found.outlet_id], ["technician", found.technician_id], ["call", found.call_id],
      ["region", profile.region], ["product line", profile.product_line], ["model", profile.model],
      ["request", profile.request], ["fault code", profile.fault_code], ["cause", profile.cause],
    ].filter(([, v]) => v);
    const first = found.timeline.length ? new Date(found.timeline[0].time) : new Date(found.as_of);
    add(el,
      h("p", {}, h("a", { href: link("overview") }, "← the loop")),
      h("h1", {}, `Case ${found.case_id} `,
        h("span", { class: `badge ${found.loop_closed ? "good" : "open"}`, dataset: { testid: "loop-state" } },
          found.loop_closed ? "loop closed" : "loop open")),
      h("p", { class: "muted" }, `As of ${fmtTime(found.as_of)}`, found.known_at ? `, as known at ${fmtTime(found.known_at)}` : ""),
      found.awaiting_registration ? h("p", { class: "banner" }, "Its call is known but the case is not registered yet.") : null,
      h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("div", { class: "cards" }, STAGES.map((stage) => {
        const st = found.steps[stage];
        return h("div", { class: `card step ${st.status}`, dataset: { testid: `case-step-${stage}`, status: st.status } },
          h("div", { class: "card-title" }, STAGE_TITLES[stage]),
          h("div", { class: "status" }, STATUS_WORDS[st.status] || words(st.status)),
          h("dl", { class: "small" },
            st.opened ? [h("dt", {}, "opened"), h("dd", {}, fmtTime(st.opened))] : null,
            st.due ? [h("dt", {}, "due"), h("dd", {}, fmtTime(st.due))] : null,
            st.done ? [h("dt", {}, "done"), h("dd", {}, fmtTime(st.done))] : null,
            st.owner ? [h("dt", {}, "owner"), h("dd", {}, st.owner)] : null));
      })),
      h("section", { class: "panel" }, h("h2", {}, "The steps over time"),
        stepLanes({ steps: found.steps, events: found.timeline, from: first, to: new Date(found.as_of) })),
      found.anomalies.length ? h("section", { class: "panel" }, h("h2", {}, "Anomalies"),
        h("ul", {}, found.anomalies.map((a) => h("li", {}, `${fmtTime(a.time)}: ${words(a.anomaly)}`)))) : null,
      h("section", { class: "panel" },
        h("h2", {}, `Timeline (${found.timeline.length} events)`),
        h("table", { class: "timeline", dataset: { testid: "timeline" } },
          h("thead", {}, h("tr", {}, ["happened", "recorded", "event", "source", "details"].map((c) => h("th", {}, c)))),
          h("tbody", {}, found.timeline.map((e) => h("tr", { dataset: { testid: "timeline-event", type: e.type } },
            h("td", {}, fmtTime(e.time)),
            h("td", { class: "muted" }, fmtTime(e.recorded)),
            h("td", { title: `id ${e.id}, position ${e.position}` }, e.type),
            h("td", { class: "muted" }, e.source),
            h("td", { class: "details" }, summarize(e.data))))))),
    );
  },
};
