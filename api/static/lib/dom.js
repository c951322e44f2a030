// Small helpers: building elements, formatting times and numbers, the hash route.

import { state } from "./api.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// append children, skipping null, undefined and false (parts a page leaves out)
export function add(el, ...children) {
  append(el, children);
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const pad = (n) => String(n).padStart(2, "0");

// Times are shown in the browser's zone (named in the header); the API speaks UTC.
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fmtDay(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function zoneName() {
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  let name = "";
  try { name = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { /* unnamed */ }
  return `times in ${name ? name + ", " : ""}UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

// datetime-local input values are local wall-clock times without a zone
export function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${fmtDay(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export function fmtHours(hours) {
  if (hours === null || hours === undefined) return "—";
  if (hours < 1) return `${Math.round(hours * 60)} min`;
  if (hours < 48) return `${hours.toFixed(1)} h`;
  return `${(hours / 24).toFixed(1)} days`;
}

export function fmtInt(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US");
}

export function fmtPpm(ppm) {
  if (ppm === null || ppm === undefined) return "n/a";
  return `${Number(ppm).toLocaleString("en-US", { maximumFractionDigits: 1 })} PPM`;
}

export function words(name) {
  return String(name).replaceAll("_", " ");
}

export const STAGES = ["recorded", "handled", "reviewed", "fed_back"];
export const STAGE_TITLES = {
  recorded: "Recorded", handled: "Handled", reviewed: "Reviewed", fed_back: "Fed back",
};

// --- the hash route: #/page/arg?param=value; as_of and known_at travel on every link ---------
export function currentRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || "overview", args: parts.slice(1), params: new URLSearchParams(query) };
}

export function link(page, args = [], params = {}) {
  const query = new URLSearchParams();
  if (state.asOf) query.set("as_of", state.asOf);
  if (state.knownAt) query.set("known_at", state.knownAt);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const path = [page, ...args.map(encodeURIComponent)].join("/");
  return `#/${path}${query.toString() ? "?" + query : ""}`;
}

export function go(page, args = [], params = {}) {
  location.hash = link(page, args, params);
}

export function paramsObject(params) {
  const out = {};
  for (const [k, v] of params.entries()) if (k !== "as_of" && k !== "known_at") out[k] = v;
  return out;
}

export function errorBox(error) {
  const status = error && error.status;
  let text = error && error.message ? error.message : String(error);
  if (status === 403) text = `Your key may not read this: ${text}`;
  return h("p", { class: "error", role: "alert" }, text);
}
