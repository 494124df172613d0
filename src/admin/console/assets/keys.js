// API keys: metadata only (a key is shown once, at creation or roll, in a
// dialog that forgets it when closed). Filters and paging work on the
// whole list, fetched page by page from the API.

import { api, all, enc } from './api.js';
import { h, page, table, badge, when, formDialog, field, confirm, dialog, copy, pager } from './ui.js';

const PAGE = 20;
const stateKind = { active: 'ok', expired: 'warn', revoked: 'bad' };
let filters = { client: '', state: '', at: 0 };

/** The key, once: a readonly field, a copy button, a plain warning. */
export function showOnce(title, created) {
  dialog(title, (close, heading) => {
    const id = 'new-key';
    const input = h('input', { id, type: 'text', readOnly: true, value: created.key, spellcheck: 'false', autocomplete: 'off' });
    const copyButton = h('button', { type: 'button', onclick: () => copy(input.value, input, copyButton) }, 'Copy');
    const done = h('button.primary', {
      type: 'button',
      onclick: () => { input.value = ''; close(); },
    }, 'Done');
    const body = h('div.dialog-body', {}, h('h2', { id: heading.id }, 'Copy your new API key'),
      h('p', {}, `Key "${created.name}" for client ${created.client} (${created.id}).`),
      h('div.field', {}, h('label', { for: id }, 'New API key'), h('div.copy-row', {}, input, copyButton)),
      h('p.warning', {}, 'This is the only time the key is shown. Store it now; keygate keeps only its hash and cannot show it again.'),
      h('div.buttons', {}, done));
    setTimeout(() => input.select(), 0);
    return body;
  });
}

export async function keys(view, main) {
  const t = table(['Name', 'Prefix', 'Client', 'Roles', 'Created', 'Last used', 'Expires', 'State', '']);
  const reload = () => { view.replaceChildren(); keys(view, main); };
  let clients = [];
  const bar = h('div.bar');
  const paging = h('div');
  view.append(h('h1', {}, 'API keys'), bar, t.el, paging);
  await page(main, 'API keys', async () => {
    const [list, cl] = await Promise.all([all('/api/v1/keys', 'keys'), all('/api/v1/clients', 'clients')]);
    clients = cl.map((c) => c.name);
    const clientSel = h('select', { id: 'filter-client' }, h('option', { value: '' }, 'All'),
      clients.map((c) => h('option', { value: c, selected: c === filters.client }, c)));
    const stateSel = h('select', { id: 'filter-state' }, ['', 'active', 'expired', 'revoked'].map((s) => h('option', { value: s, selected: s === filters.state }, s || 'All')));
    const draw = () => {
      const shown = list.filter((k) => (!filters.client || k.client === filters.client) && (!filters.state || k.state === filters.state))
        .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
      const pages = Math.max(1, Math.ceil(shown.length / PAGE));
      filters.at = Math.min(filters.at, pages - 1);
      t.fill(shown.slice(filters.at * PAGE, (filters.at + 1) * PAGE), (k) => row(k, reload),
        list.length ? 'No key matches these filters.' : h('span', {}, 'No API keys yet. ', h('button', { type: 'button', onclick: () => create(clients, reload) }, 'Create key')));
      paging.replaceChildren(pager(shown.length, PAGE, filters.at, (n) => { filters.at = n; draw(); }));
    };
    clientSel.addEventListener('change', () => { filters = { ...filters, client: clientSel.value, at: 0 }; draw(); });
    stateSel.addEventListener('change', () => { filters = { ...filters, state: stateSel.value, at: 0 }; draw(); });
    bar.append(
      h('label', { for: 'filter-client' }, 'Filter by client'), clientSel,
      h('label', { for: 'filter-state' }, 'Filter by state'), stateSel,
      h('span.grow'),
      h('button.primary', { type: 'button', onclick: () => create(clients, reload) }, 'Create key'));
    draw();
  });
}

function row(k, reload) {
  const live = k.state === 'active' && k.source === 'api';
  return h('tr', {},
    h('td', {}, h('strong', {}, k.name), h('div.muted.mono', {}, k.id)),
    h('td', {}, h('code', {}, `${k.prefix}…`)),
    h('td', {}, k.client),
    h('td', {}, k.roles.length ? k.roles.join(', ') : h('span.muted', {}, 'client\'s')),
    h('td', {}, when(k.created_at)),
    h('td', {}, k.last_used_at ? when(k.last_used_at) : h('span.muted', {}, 'never')),
    h('td', {}, k.expires_at ? when(k.expires_at) : h('span.muted', {}, 'never')),
    h('td', {}, badge(k.state, stateKind[k.state] || ''), k.source === 'config' ? h('div.muted', {}, 'from config file') : null),
    h('td.actions', {}, live ? [
      h('button.small', { type: 'button', 'aria-label': `Roll ${k.name}`, onclick: () => roll(k, reload) }, 'Roll'),
      h('button.small.danger', { type: 'button', 'aria-label': `Revoke ${k.name}`, onclick: () => revoke(k, reload) }, 'Revoke'),
    ] : null));
}

function create(clients, reload) {
  formDialog({
    title: 'Create an API key',
    fields: [
      field('client', 'Client', { type: 'select', options: clients }),
      field('name', 'Key name', { hint: 'What uses it, e.g. "nightly billing workflow".' }),
      field('expires_in', 'Expires in', { hint: 'e.g. 90d or 12h; empty: the configured default.' }),
    ],
    submitLabel: 'Create key',
    submit: async (v, close) => {
      const body = { client: v.client, name: v.name.trim() };
      if (v.expires_in.trim()) body.expires_in = v.expires_in.trim();
      const r = await api.post('/api/v1/keys', body);
      close();
      reload();
      showOnce('New API key', r.data);
    },
  });
}

function revoke(k, reload) {
  confirm({
    title: `Revoke ${k.name}?`,
    text: `Requests with this key (${k.prefix}…) answer 401 from now on. This cannot be undone.`,
    label: 'Revoke key',
    action: async () => {
      const r = await api.del(`/api/v1/keys/${enc(k.id)}`);
      reload();
      if (r.status === 202 && r.data) {
        setTimeout(() => alertPending(r.data.pending_replicas || []), 0);
      }
    },
  });
}

function alertPending(replicas) {
  dialog('Revoked; some replicas have not confirmed yet', (close, heading) => h('div.dialog-body', {}, heading,
    h('p', {}, `Still pending on: ${replicas.join(', ')}. They report not-ready until they catch up.`),
    h('div.buttons', {}, h('button.primary', { type: 'button', onclick: close }, 'OK'))));
}

function roll(k, reload) {
  formDialog({
    title: `Roll ${k.name}`,
    intro: h('p.muted', {}, 'A successor key is made now; this one keeps working for the grace period, then expires.'),
    fields: [field('grace', 'Grace period', { value: '24h' })],
    submitLabel: 'Roll key',
    submit: async (v, close) => {
      const r = await api.post(`/api/v1/keys/${enc(k.id)}/roll`, { grace: v.grace.trim() || null });
      close();
      reload();
      showOnce('Rolled API key', r.data);
    },
  });
}
