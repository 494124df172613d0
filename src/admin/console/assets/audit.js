// Audit: who changed what, when — oldest first, as the API pages it.
// Records never hold a value, only fingerprints.

import { api } from './api.js';
import { h, page, table, when } from './ui.js';

export async function audit(view, main) {
  const t = table(['When', 'Who', 'Action', 'Object', 'Detail'], 6);
  const more = h('div.bar');
  view.append(h('h1', {}, 'Audit'), h('p.muted', {}, 'Every change made through the API or this console, oldest first.'), t.el, more);
  const shown = [];
  const load = async (cursor) => {
    const q = `/api/v1/audit?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await api.get(q);
    shown.push(...r.records);
    t.fill(shown, (a) => h('tr', {},
      h('td', {}, when(a.at)),
      h('td', {}, a.actor.client, a.actor.key_id ? h('div.muted.mono', {}, a.actor.key_id) : null),
      h('td', {}, h('code', {}, a.action)),
      h('td', {}, `${a.object.kind} `, h('strong', {}, a.object.name)),
      h('td', {}, a.detail || '', a.fingerprint_after ? h('div.muted', {}, `fingerprint ${a.fingerprint_before || '—'} → ${a.fingerprint_after}`) : null)),
    'Nothing changed yet.');
    more.replaceChildren(r.next_cursor
      ? h('button', { type: 'button', onclick: () => page(document.getElementById('main'), 'Audit', () => load(r.next_cursor)) }, 'Next page')
      : h('span.muted', {}, `${shown.length} records`));
  };
  await page(main, 'Audit', () => load(null));
}
