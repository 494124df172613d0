// The console's entry: sign-in, the session, and the hash router. The
// admin key is typed into one password field, sent once to
// POST /console/session and dropped; from then on the HttpOnly session
// cookie (unreadable here) and the in-memory CSRF token do the work.

import { api, ApiError, setCsrf, setSessionEndHandler } from './api.js';
import { h, uid } from './ui.js';
import { overview } from './overview.js';
import { tokens } from './tokens.js';
import { connectors } from './connectors.js';
import { keys } from './keys.js';
import { clients } from './clients.js';
import { audit } from './audit.js';

const routes = { overview, tokens, connectors, keys, clients, audit };
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOutButton = document.getElementById('sign-out');
let session = null;
/** Bumped on every navigation, so a slow page that finishes late draws nothing. */
let generation = 0;

function signedIn(info) {
  session = info;
  setCsrf(info.csrf_token);
  nav.hidden = false;
  signOutButton.hidden = false;
  who.textContent = `${info.client} · ${info.key_name || info.key_id}`;
}

function signedOut(message = '') {
  session = null;
  setCsrf(null);
  nav.hidden = true;
  signOutButton.hidden = true;
  who.textContent = '';
  for (const d of document.querySelectorAll('dialog')) d.close();
  showSignIn(message);
}

function showSignIn(message) {
  generation += 1;
  document.title = 'Sign in · keygate';
  const id = uid('key');
  const errId = `${id}-err`;
  const input = h('input', { id, type: 'password', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': errId, required: true });
  const err = h('div.error', { id: errId, role: 'alert' }, message);
  const button = h('button.primary', { type: 'submit' }, 'Sign in');
  const form = h('form', { novalidate: true },
    h('div.field', {}, h('label', { for: id }, 'Admin API key'), input,
      h('div.hint', {}, 'The key of a client with an admin role. It is sent once and never stored by this page.'), err),
    h('div.buttons', {}, button));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    input.removeAttribute('aria-invalid');
    const key = input.value.trim();
    if (!key) {
      err.textContent = 'Paste an admin API key.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const r = await api.post('/console/session', { key });
      input.value = '';
      signedIn(r.data);
      if (!location.hash || location.hash === '#/') location.hash = '#/overview'; else route();
    } catch (e) {
      err.textContent = e instanceof ApiError && e.status === 401
        ? 'That key is not valid (wrong, revoked or expired).'
        : e.message;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  main.replaceChildren(h('section.signin', {},
    h('div.card', {}, h('h1', {}, 'Sign in to keygate'),
      h('p.muted', {}, 'Operate tokens, connectors, API keys and clients.'), form)));
  main.setAttribute('aria-busy', 'false');
  input.focus();
}

async function route() {
  if (!session) return;
  const name = (location.hash.replace(/^#\/?/, '').split('/')[0]) || 'overview';
  const render = routes[name] || overview;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${routes[name] ? name : 'overview'}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  generation += 1;
  const mine = generation;
  const view = h('div');
  main.replaceChildren(view);
  await render(view, main, () => mine === generation);
}

signOutButton.addEventListener('click', async () => {
  try { await api.del('/console/session'); } catch { /* ended already */ }
  history.replaceState(null, '', location.pathname);
  signedOut('Signed out.');
});

setSessionEndHandler((message) => signedOut(message));
window.addEventListener('hashchange', route);

// A reload keeps the session (the cookie); ask the server whether there is one.
api.get('/console/session')
  .then((info) => { signedIn(info); route(); })
  .catch(() => signedOut(''));
