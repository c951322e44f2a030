// The dashboard's shell: the key, the moment asked about (as_of, known_at), the pages' menu and
// the hash route. Each page is one module in pages/ (listed in pages/index.js).

import { availableRoutes, get, setKey, state } from "./lib/api.js";
import { clear, currentRoute, errorBox, fmtTime, fromLocalInput, go, h, link, toLocalInput, zoneName } from "./lib/dom.js";
import { PAGES } from "./pages/index.js";

const $ = (id) => document.getElementById(id);
let rendering = 0;
let available = null; // the pages whose routes this server has

function takeKeyFromUrl() {
  // #key=<key> logs the page in; the fragment never reaches the server, and it is removed
  // from the address bar and history at once
  const match = location.hash.match(/^#key=([^&]+)/);
  if (!match) return;
  setKey(decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + "#/overview");
}

function showLogin(message) {
  $("top").hidden = true;
  $("main").hidden = true;
  $("moment-note").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("key-input").focus();
}

function showApp() {
  $("login").hidden = true;
  $("top").hidden = false;
  $("main").hidden = false;
}

async function checkKey() {
  try {
    await get("/health", {}, { asOf: false, knownAt: false });
    return true;
  } catch (error) {
    if (error.status === 401) return false;
    return true; // the key is good; the server has another problem the pages will show
  }
}

async function pagesAvailable() {
  const routes = await availableRoutes();
  return PAGES.filter((page) => !routes || (page.routes || []).every((r) => routes.has(r)) ||
    (page.anyRoute && page.anyRoute.some((r) => routes.has(r))));
}

function buildNav(route) {
  const nav = $("nav");
  clear(nav, available.filter((p) => p.title).map((page) =>
    h("a", { href: link(page.id), class: page.id === route.page ? "active" : "", dataset: { page: page.id } }, page.title)));
}

function syncMoment(route) {
  state.asOf = route.params.get("as_of") || null;
  state.knownAt = route.params.get("known_at") || null;
  $("as-of").value = toLocalInput(state.asOf);
  $("known-at").value = toLocalInput(state.knownAt);
}

function momentNote(page) {
  const note = $("moment-note");
  const parts = [];
  if (state.asOf) parts.push(`The world as it stood at ${fmtTime(state.asOf)}`);
  if (state.knownAt) {
    parts.push(page.knownAt === false
      ? "known at is not answered by this page's API and is ignored here"
      : `as known by the engine at ${fmtTime(state.knownAt)}`);
  }
  note.hidden = parts.length === 0;
  note.textContent = parts.length ? parts.join(", ") + "." : "";
}

async function render() {
  if (!state.key) return showLogin();
  showApp();
  const route = currentRoute();
  syncMoment(route);
  if (!available) available = await pagesAvailable();
  buildNav(route);
  const page = available.find((p) => p.id === route.page) || PAGES.find((p) => p.id === route.page);
  const main = $("main");
  const mine = ++rendering;
  momentNote(page || {});
  if (!page || !available.includes(page)) {
    clear(main, h("h1", {}, "Not on this server"),
      h("p", {}, `The page "${route.page}" needs API routes this server does not have yet.`),
      h("p", {}, h("a", { href: link("overview") }, "Back to the loop")));
    return;
  }
  document.title = `${page.title || page.id} — closedloop`;
  // a page refreshing itself keeps showing its last content until the new one is ready
  if (main.dataset.page !== page.id) clear(main, h("p", { class: "muted loading" }, "Loading…"));
  main.dataset.page = page.id;
  try {
    const content = h("div", { class: "page", dataset: { page: page.id } });
    await page.render(content, route, { stillWanted: () => mine === rendering });
    if (mine === rendering) clear(main, content);
  } catch (error) {
    if (mine === rendering && state.key) clear(main, errorBox(error));
  }
}

function init() {
  takeKeyFromUrl();
  state.onUnauthorized = (message) => {
    setKey(null);
    showLogin(`${message}. Paste a valid key.`);
  };
  $("zone").textContent = zoneName();
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    setKey($("key-input").value.trim());
    $("key-input").value = "";
    if (await checkKey()) {
      if (!location.hash || location.hash === "#") location.hash = "#/overview";
      render();
    }
  });
  $("forget").addEventListener("click", () => { setKey(null); showLogin("The key was forgotten."); });
  const moved = () => {
    const route = currentRoute();
    const params = Object.fromEntries(route.params.entries());
    delete params.as_of; delete params.known_at;
    state.asOf = fromLocalInput($("as-of").value);
    state.knownAt = fromLocalInput($("known-at").value);
    go(route.page, route.args, params);
  };
  $("as-of").addEventListener("change", moved);
  $("known-at").addEventListener("change", moved);
  $("now").addEventListener("click", () => { $("as-of").value = ""; $("known-at").value = ""; moved(); });
  $("find-case").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("case-search").value.trim();
    if (id) go("case", [id]);
  });
  window.addEventListener("hashchange", render);
  if (!state.key) return showLogin();
  checkKey().then((ok) => (ok ? render() : null));
}

init();

