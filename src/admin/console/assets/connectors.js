// Connectors: each upstream API behind keygate, its proxy URL and a curl
// line to try it, and the tokens it injects. Two tokens writing the same
// header cannot both be attached: checked as boxes are ticked, before the
// API would refuse it.

import { api, all, enc } from './api.js';
import { h, page, table, ownerBadge, formDialog, field, checks, confirm, copy } from './ui.js';

/** The proxy's base URL from the bound address keygate reports. */
function proxyBase(status) {
  const listen = status.proxy_listen;
  if (!listen) return `${location.protocol}//${location.hostname}:8080`;
  const i = listen.lastIndexOf(':');
  let host = listen.slice(0, i);
  if (host === '0.0.0.0' || host === '[::]') host = location.hostname;
  return `${status.tls ? 'https' : 'http'}://${host}:${listen.slice(i + 1)}`;
}

/** The unique-header rule: an alert and a disabled submit while broken. */
function headerRule(byName) {
  return (f, form) => {
    const seen = new Map();
    let clash = null;
    for (const name of f.value()) {
      const header = (byName.get(name) || {}).header || '';
      const key = header.toLowerCase();
      if (seen.has(key)) clash = `${seen.get(key)} and ${name} write the same header ${header}; attach one of them.`;
      seen.set(key, name);
    }
    f.setError(clash || '');
    form.submitButton.disabled = Boolean(clash);
    f.blocks = () => Boolean(clash);
  };
}

export async function connectors(view, main) {
  const t = table(['Name', 'Upstream', 'Proxy URL and curl', 'Tokens', 'Owner', '']);
  const reload = () => { view.replaceChildren(); connectors(view, main); };
  let tokenList = [];
  const open = () => newConnector(tokenList, reload);
  view.append(h('h1', {}, 'Connectors'),
    h('div.bar', {}, h('p.muted.grow', {}, 'Each connector forwards /<name>/… to its upstream with its tokens injected.'),
      h('button.primary', { type: 'button', onclick: () => open() }, 'New connector')),
    t.el);
  await page(main, 'Connectors', async () => {
    const [status, list, toks] = await Promise.all([
      api.get('/api/v1/status'), all('/api/v1/connectors', 'connectors'), all('/api/v1/tokens', 'tokens'),
    ]);
    tokenList = toks;
    const base = proxyBase(status);
    t.fill(list, (c) => {
      const url = c.listen ? `http://${c.listen}/` : `${base}/${c.name}/`;
      const curl = c.auth === 'none'
        ? `curl ${url}`
        : `curl -H "Authorization: Bearer $KEYGATE_KEY" ${url}`;
      const curlButton = h('button.small', { type: 'button', 'aria-label': `Copy curl for ${c.name}`, onclick: () => copy(curl, null, curlButton) }, 'Copy curl');
      return h('tr', {},
        h('td', {}, h('strong', {}, c.name), c.description ? h('div.muted', {}, c.description) : null),
        h('td', {}, h('code', {}, c.upstream)),
        h('td', {}, h('code', {}, url), h('pre.curl.mono', {}, curl), curlButton),
        h('td', {}, c.tokens.length
          ? h('ul', {}, c.tokens.map((k) => h('li', {}, h('strong', {}, k.name), ' → ', h('code', {}, k.header), k.prefix ? ` (${k.prefix})` : '')))
          : h('span.muted', {}, 'none')),
        h('td', {}, ownerBadge(c)),
        h('td.actions', {}, c.source === 'api' ? [
          h('button.small', { type: 'button', 'aria-label': `Edit tokens of ${c.name}`, onclick: () => editTokens(c, tokenList, reload) }, 'Edit tokens'),
          h('button.small.danger', {
            type: 'button',
            'aria-label': `Delete ${c.name}`,
            onclick: () => confirm({
              title: `Delete connector ${c.name}?`,
              text: 'Calls to it answer 404 at once. Roles that grant it must drop it first.',
              label: 'Delete connector',
              action: async () => { await api.del(`/api/v1/connectors/${enc(c.name)}`); reload(); },
            }),
          }, 'Delete'),
        ] : null));
    }, h('span', {}, 'No connectors yet. ', h('button', { type: 'button', onclick: () => open() }, 'New connector')));
  });
}

function tokenChecks(tokenList, checked) {
  const byName = new Map(tokenList.map((t) => [t.name, t]));
  return checks('tokens', 'Tokens', tokenList.map((t) => t.name), {
    checked,
    hint: (n) => `${byName.get(n).header}${byName.get(n).prefix ? ` (${byName.get(n).prefix})` : ''}`,
    onchange: headerRule(byName),
  });
}

/** `Name: value` lines → an object; a line without `:` is an error. */
function parseHeaders(text) {
  const out = {};
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const i = line.indexOf(':');
    if (i < 1) throw Object.assign(new Error(`"${line}" is not Name: value`), { problems: [{ pointer: '/headers', message: `"${line}" is not Name: value` }] });
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

function newConnector(tokenList, reload) {
  formDialog({
    title: 'New connector',
    fields: [
      field('name', 'Name', { hint: 'The first path segment: /<name>/…' }),
      field('upstream', 'Upstream URL', { hint: 'e.g. https://api.stripe.com' }),
      tokenChecks(tokenList, []),
      field('headers', 'Static headers', { type: 'textarea', hint: 'One "Name: value" per line, added to every request (not secrets).' }),
      field('timeouts', 'Timeout', { hint: 'Response timeout, e.g. 30s (empty: the default).' }),
    ],
    // `/timeouts/response` names the Timeout field.
    pointerOf: (p) => p.split('/')[1],
    submitLabel: 'Create connector',
    submit: async (v, close) => {
      const body = { name: v.name.trim(), upstream: v.upstream.trim(), tokens: v.tokens };
      const headers = parseHeaders(v.headers);
      if (Object.keys(headers).length) body.headers = headers;
      if (v.timeouts.trim()) body.timeouts = { response: v.timeouts.trim() };
      await api.post('/api/v1/connectors', body);
      close();
      reload();
    },
  });
}

function editTokens(c, tokenList, reload) {
  formDialog({
    title: `Tokens of ${c.name}`,
    fields: [tokenChecks(tokenList, c.tokens.map((t) => t.name))],
    submitLabel: 'Save tokens',
    submit: async (v, close) => {
      await api.put(`/api/v1/connectors/${enc(c.name)}/tokens`, { tokens: v.tokens });
      close();
      reload();
    },
  });
}
