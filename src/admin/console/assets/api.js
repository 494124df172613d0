// The console's one door to keygate: same-origin fetches with the session
// cookie (the browser sends it; script cannot read it) and, on anything
// but GET, the CSRF token held in this module's memory only — never in
// storage, a cookie or the URL.

let csrf = null;

/** Called when a request finds the session over (401 session_expired). */
let onSessionEnd = () => {};

export function setSessionEndHandler(f) { onSessionEnd = f; }
export function setCsrf(token) { csrf = token; }

/** An API error: status, code, message, and per-field problems. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `request failed (${status})`);
    this.status = status;
    this.code = e.code || 'error';
    this.problems = Array.isArray(e.problems) ? e.problems : [];
  }
}

async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const resp = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401 && err.code === 'session_expired' && !path.startsWith('/console/session')) {
      onSessionEnd('Your session ended; sign in again.');
    }
    throw err;
  }
  return { status: resp.status, data };
}

export const api = {
  get: (p) => request('GET', p).then((r) => r.data),
  post: (p, b = {}) => request('POST', p, b),
  put: (p, b = {}) => request('PUT', p, b),
  patch: (p, b = {}) => request('PATCH', p, b),
  del: (p) => request('DELETE', p),
};

/** Every item of a paged list (`limit`/`cursor`/`next_cursor`), at most `max`. */
export async function all(path, field, max = 10000) {
  const out = [];
  let cursor = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const url = `${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await api.get(url);
    out.push(...page[field]);
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}

export function enc(name) { return encodeURIComponent(name); }
