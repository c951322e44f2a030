// The dashboard's only way to data: the public API, with the user's key and the moment asked about.

const KEY = "closedloop.key";

export const state = {
  key: sessionStorage.getItem(KEY),
  asOf: null,    // ISO string or null (now)
  knownAt: null, // ISO string or null (everything recorded)
  onUnauthorized: () => {},
};

export function setKey(key) {
  state.key = key;
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

// `moment`: send as_of (and known_at where the route answers it) from the header's pickers.
export async function get(path, params = {}, { asOf = true, knownAt = true } = {}) {
  const query = new URLSearchParams();
  if (asOf && state.asOf) query.set("as_of", state.asOf);
  if (knownAt && state.knownAt) query.set("known_at", state.knownAt);
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => query.append(name, v));
    else query.set(name, value);
  }
  const url = path + (query.toString() ? `?${query}` : "");
  const response = await fetch(url, {
    headers: { Authorization: `Bearer ${state.key || ""}`, Accept: "application/json" },
  });
  if (!response.ok) {
    let message = response.statusText;
    try {
      const body = await response.json();
      message = body.error || message;
    } catch (_) { /* not JSON: keep the status text */ }
    if (response.status === 401) state.onUnauthorized(message);
    throw new ApiError(response.status, message, path);
  }
  return response.json();
}

// The routes this server has, from its OpenAPI document (served without a key): a page whose
// routes are missing is hidden until they land.
let routes = null;
export async function availableRoutes() {
  if (routes) return routes;
  try {
    const response = await fetch("/openapi.json");
    const doc = await response.json();
    routes = new Set(Object.keys(doc.paths || {}));
  } catch (_) {
    routes = null;
  }
  return routes;
}
