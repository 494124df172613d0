// Tokens: what each injects (header, prefix), its state and fingerprint —
// never a value. New tokens, values set or replaced (masked, never shown
// back), refresh for http_request tokens, delete for API tokens.

import { api, enc } from './api.js';
import { h, page, table, badge, ownerBadge, age, formDialog, field, confirm } from './ui.js';

const stateKind = { ready: 'ok', per_request: 'ok', refreshing: 'warn', unavailable: 'bad' };

export async function tokens(view, main) {
  const notice = h('p.notice', { role: 'status' });
  const t = table(['Name', 'Type', 'Header', 'State', 'Fingerprint', 'Age', 'Last refresh error', 'Owner', '']);
  const reload = () => { view.replaceChildren(); tokens(view, main); };
  view.append(h('h1', {}, 'Tokens'),
    h('div.bar', {}, h('p.muted.grow', {}, 'Credentials keygate injects into upstream requests. Values are never shown.'),
      h('button.primary', { type: 'button', onclick: () => newToken(reload) }, 'New token')),
    notice, t.el);
  await page(main, 'Tokens', async () => {
    const list = (await api.get('/api/v1/tokens?limit=1000')).tokens;
    t.fill(list, (tok) => h('tr', {},
      h('td', {}, h('strong', {}, tok.name), tok.description ? h('div.muted', {}, tok.description) : null),
      h('td', {}, tok.type),
      h('td', {}, h('code', {}, tok.header), tok.prefix ? h('div.muted', {}, `prefix ${tok.prefix}`) : null),
      h('td', {}, badge(tok.state, stateKind[tok.state] || '')),
      h('td', {}, tok.fingerprint ? h('code', {}, tok.fingerprint) : '—'),
      h('td', {}, age(tok.updated_at)),
      h('td', {}, tok.last_error ? h('span.error', {}, tok.last_error) : '—'),
      h('td', {}, ownerBadge(tok)),
      h('td.actions', {}, actions(tok, reload, notice))),
    h('span', {}, 'No tokens yet. ', h('button', { type: 'button', onclick: () => newToken(reload) }, 'New token')));
  });
}

function actions(tok, reload, notice) {
  const out = [];
  const kind = tok.value_source && tok.value_source.kind;
  // A value can be set where keygate owns it: set at run time, or an API
  // token's own; never over an env/file source or the file's literal.
  if (tok.type === 'text' && (kind === 'admin' || (tok.source === 'api' && kind === 'literal'))) {
    out.push(h('button.small', { type: 'button', 'aria-label': `Set value of ${tok.name}`, onclick: () => setValue(tok, reload) }, 'Set value'));
  }
  if (tok.type === 'http_request') {
    out.push(h('button.small', {
      type: 'button',
      'aria-label': `Refresh ${tok.name}`,
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          await api.post(`/api/v1/tokens/${enc(tok.name)}/refresh`);
          notice.textContent = `${tok.name} refreshed.`;
          reload();
        } catch (e) { notice.textContent = `${tok.name}: ${e.message}`; ev.target.disabled = false; }
      },
    }, 'Refresh'));
  }
  if (tok.source === 'api') {
    out.push(h('button.small.danger', {
      type: 'button',
      'aria-label': `Delete ${tok.name}`,
      onclick: () => confirm({
        title: `Delete token ${tok.name}?`,
        text: 'Connectors that use it must detach it first.',
        label: 'Delete token',
        action: async () => { await api.del(`/api/v1/tokens/${enc(tok.name)}`); reload(); },
      }),
    }, 'Delete'));
  }
  return out;
}

function newToken(reload) {
  const fields = [
    field('name', 'Name', { hint: 'Letters, digits, . _ -; used in connectors and logs.' }),
    field('description', 'Description'),
    field('type', 'Type', { type: 'select', options: [['text', 'text (a value you paste)']], value: 'text', hint: 'http_request and user tokens are defined in the config file.' }),
    field('value', 'Value', { type: 'password', hint: 'Stored encrypted; never shown again.' }),
    field('header', 'Header', { value: 'Authorization' }),
    field('prefix', 'Prefix', { hint: 'e.g. Bearer — written before the value with one space.' }),
  ];
  formDialog({
    title: 'New token',
    fields,
    submitLabel: 'Create token',
    submit: async (v, close) => {
      const body = { name: v.name.trim(), type: v.type, header: v.header.trim() };
      if (v.description.trim()) body.description = v.description.trim();
      if (v.prefix.trim()) body.prefix = v.prefix.trim();
      if (v.value) body.value = v.value;
      await api.post('/api/v1/tokens', body);
      close();
      reload();
    },
  });
}

function setValue(tok, reload) {
  formDialog({
    title: `Set the value of ${tok.name}`,
    intro: h('p.muted', {}, 'The new value is used by the next request; requests in flight finish with the old one.'),
    fields: [field('value', 'New value', { type: 'password' })],
    submitLabel: 'Save value',
    submit: async (v, close) => {
      await api.put(`/api/v1/tokens/${enc(tok.name)}/value`, { value: v.value });
      close();
      reload();
    },
  });
}
