// Overview: what an operator checks first — the config in force, whether
// this replica is ready and why not, tokens without a usable value, and
// traffic computed from two samples of the Prometheus counters.

import { api } from './api.js';
import { h, page, when, badge } from './ui.js';

/** Sums of `keygate_requests_total` (all, 4xx, 5xx) in OpenMetrics text. */
function totals(text) {
  let all = 0; let refused = 0; let errors = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('keygate_requests_total{')) continue;
    const m = /status="(\d+)"\}\s+([0-9.e+]+)/.exec(line);
    if (!m) continue;
    const n = Number(m[2]);
    all += n;
    if (m[1].startsWith('4')) refused += n;
    if (m[1].startsWith('5')) errors += n;
  }
  return { all, refused, errors, at: performance.now() };
}

/** A card's body below its heading; `null` parts are left out. */
function fill(card, ...parts) {
  card.replaceChildren(card.firstChild, ...parts.filter((p) => p !== null && p !== undefined));
}

async function sample() {
  const r = await fetch('/metrics', { credentials: 'same-origin', cache: 'no-store' });
  return totals(await r.text());
}

export async function overview(view, main, current) {
  const card = (title, ...body) => h('section.card', { 'aria-labelledby': title.replace(/\W/g, '') },
    h('h2', { id: title.replace(/\W/g, '') }, title), ...body);
  const config = card('Config', h('p.muted', {}, 'Loading…'));
  const ready = card('Readiness', h('p.muted', {}, 'Loading…'));
  const attention = card('Tokens needing attention', h('p.muted', {}, 'Loading…'));
  const traffic = card('Traffic', h('p.muted', {}, 'Measuring…'));
  view.append(h('h1', {}, 'Overview'), h('div.cards', {}, config, ready, attention, traffic));
  await page(main, 'Overview', async () => {
    const [status, readyz, list] = await Promise.all([
      api.get('/api/v1/status'),
      fetch('/readyz', { cache: 'no-store' }).then((r) => r.json()),
      api.get('/api/v1/tokens?limit=1000'),
    ]);
    const last = status.last_reload || {};
    fill(config,
      h('p', {}, 'Generation ', h('span.big', {}, String(status.generation))),
      h('p', {}, 'Loaded ', when(status.loaded_at), ' from ', h('code', {}, status.config_path)),
      h('p', {}, 'Last reload: ', last.ok ? badge('ok', 'ok') : badge('refused', 'bad'), ` by ${last.trigger || '—'}, `, when(last.at)),
      (last.errors || []).length ? h('ul.error', {}, last.errors.map((e) => h('li', {}, typeof e === 'string' ? e : (e.message || JSON.stringify(e))))) : null);
    const reasons = [...(readyz.reasons || []), ...(readyz.tokens_without_value || []).map((t) => `token ${t} has no value`)];
    fill(ready,
      h('p', {}, readyz.status === 'ready' ? badge('ready', 'ok') : badge('not ready', 'bad')),
      reasons.length ? h('ul', {}, reasons.map((r) => h('li', {}, r))) : h('p.muted', {}, 'Serving traffic.'),
      status.replica ? h('p.muted', {}, `Replica ${status.replica.name}: applied ${status.replica.applied} of ${status.replica.latest}`) : null);
    const bad = list.tokens.filter((t) => t.state === 'unavailable' || t.last_error);
    fill(attention, bad.length
      ? h('ul', {}, bad.map((t) => h('li', {}, h('strong', {}, t.name), ' ', badge(t.state, 'bad'), t.last_error ? ` ${t.last_error}` : '')))
      : h('p', {}, badge('ok', 'ok'), ' All tokens have a value.'));
  });
  // Rates need two samples; keep refreshing while the page is shown.
  let prev = await sample().catch(() => null);
  const tick = async () => {
    if (!current() || !view.isConnected) return;
    const now = await sample().catch(() => null);
    if (prev && now) {
      const dt = (now.at - prev.at) / 1000;
      const rps = Math.max(0, (now.all - prev.all) / dt);
      const eps = Math.max(0, (now.errors - prev.errors) / dt);
      const rfs = Math.max(0, (now.refused - prev.refused) / dt);
      fill(traffic,
        h('p', {}, h('span.big', {}, rps.toFixed(1)), ' requests/s'),
        h('p', {}, h('span.big', {}, eps.toFixed(2)), ' errors/s (5xx) · ', h('strong', {}, rfs.toFixed(2)), ' refused/s (4xx)'),
        h('p.muted', {}, `${now.all} requests since start; refreshed every 5 s`));
    }
    prev = now;
    setTimeout(tick, 5000);
  };
  setTimeout(tick, 2000);
}
