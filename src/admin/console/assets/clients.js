// Clients and roles: who calls (the non-interactive users keys belong to)
// and what each role allows — connector, methods, paths.

import { api, all, enc } from './api.js';
import { h, page, table, badge, ownerBadge, formDialog, field, checks, confirm } from './ui.js';

const list = (xs) => (xs && xs.length ? xs.join(', ') : 'all');

export async function clients(view, main) {
  const reload = () => { view.replaceChildren(); clients(view, main); };
  const ct = table(['Client', 'Roles', 'Owner', '']);
  const rt = table(['Role', 'Allows', 'Owner', '']);
  let roles = [];
  let connectors = [];
  view.append(h('h1', {}, 'Clients & roles'),
    h('div.bar', {}, h('h2.grow', {}, 'Clients'), h('button.primary', { type: 'button', onclick: () => newClient(roles, reload) }, 'New client')),
    ct.el,
    h('div.bar', {}, h('h2.grow', {}, 'Roles'), h('button.primary', { type: 'button', onclick: () => newRole(connectors, reload) }, 'New role')),
    rt.el);
  await page(main, 'Clients & roles', async () => {
    const [cl, rl, cn] = await Promise.all([all('/api/v1/clients', 'clients'), all('/api/v1/roles', 'roles'), all('/api/v1/connectors', 'connectors')]);
    roles = rl.map((r) => r.name);
    connectors = cn.map((c) => c.name);
    ct.fill(cl, (c) => h('tr', {},
      h('td', {}, h('strong', {}, c.name), c.description ? h('div.muted', {}, c.description) : null),
      h('td', {}, c.roles.map((r) => [badge(r.name, r.admin ? 'warn' : ''), ' '])),
      h('td', {}, ownerBadge(c)),
      h('td.actions', {}, c.source === 'api' ? del('client', c.name, 'Its live keys are revoked too.', `/api/v1/clients/${enc(c.name)}?confirm=true`, reload) : null)),
    'No clients yet.');
    rt.fill(rl, (r) => h('tr', {},
      h('td', {}, h('strong', {}, r.name), r.admin ? [' ', badge('admin', 'warn')] : null, r.description ? h('div.muted', {}, r.description) : null),
      h('td', {}, r.allow.length
        ? h('ul', {}, r.allow.map((g) => h('li', {}, h('strong', {}, g.connector), ` · methods ${list(g.methods)} · paths ${list(g.paths)}`)))
        : h('span.muted', {}, r.admin ? 'the admin API' : 'nothing')),
      h('td', {}, ownerBadge(r)),
      h('td.actions', {}, r.source === 'api' ? del('role', r.name, 'Clients that hold it must drop it first.', `/api/v1/roles/${enc(r.name)}`, reload) : null)),
    'No roles yet.');
  });
}

function del(kind, name, text, path, reload) {
  return h('button.small.danger', {
    type: 'button',
    'aria-label': `Delete ${name}`,
    onclick: () => confirm({ title: `Delete ${kind} ${name}?`, text, label: `Delete ${kind}`, action: async () => { await api.del(path); reload(); } }),
  }, 'Delete');
}

const csv = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

function newRole(connectors, reload) {
  formDialog({
    title: 'New role',
    fields: [
      field('name', 'Role name'),
      field('connector', 'Connector', { type: 'select', options: [['', '(none)'], ...connectors] }),
      field('methods', 'Methods', { hint: 'Comma separated, e.g. GET, POST; empty: all.' }),
      field('paths', 'Paths', { hint: 'Comma separated patterns, e.g. /v1/charges*; empty: all.' }),
      field('admin', 'Admin', { type: 'checkbox' }),
    ],
    // `/allow/0/methods` names the Methods field; `/allow/0/connector` the Connector.
    pointerOf: (p) => { const s = p.split('/'); return s[1] === 'allow' ? (s[3] || 'connector') : s[1]; },
    submitLabel: 'Create role',
    submit: async (v, close) => {
      const body = { name: v.name.trim(), admin: v.admin, allow: [] };
      if (v.connector) {
        const grant = { connector: v.connector };
        if (csv(v.methods).length) grant.methods = csv(v.methods).map((m) => m.toUpperCase());
        if (csv(v.paths).length) grant.paths = csv(v.paths);
        body.allow.push(grant);
      }
      await api.post('/api/v1/roles', body);
      close();
      reload();
    },
  });
}

function newClient(roles, reload) {
  formDialog({
    title: 'New client',
    fields: [field('name', 'Client name', { hint: 'A workflow, app or agent that calls through keygate.' }), checks('roles', 'Roles', roles)],
    submitLabel: 'Create client',
    submit: async (v, close) => {
      await api.post('/api/v1/clients', { name: v.name.trim(), roles: v.roles });
      close();
      reload();
    },
  });
}
