// The console's browser flow (issue 14, item 5), run by tests/console.rs
// against a real keygate and a real upstream. Debian's Chromium, driven by
// playwright-core; every wait is bounded. Prints one line per step; the
// keys it makes go out on `SECRET ` lines so the harness can check no log
// ever holds them. Screenshots land in $SHOTS_DIR.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const { ADMIN_URL, PROXY_URL, UPSTREAM_URL, ADMIN_KEY } = process.env;
const SHOTS = process.env.SHOTS_DIR || 'shots';
for (const [k, v] of Object.entries({ ADMIN_URL, PROXY_URL, UPSTREAM_URL, ADMIN_KEY })) {
  if (!v) throw new Error(`${k} is not set (run through tests/console.rs)`);
}
const CONSOLE = `${ADMIN_URL}/console/`;

const step = (s) => console.log(`- ${s}`);
const secret = (k) => console.log(`SECRET ${k}`);

// `launch` gives Chromium a fresh, empty profile of its own (a temp
// --user-data-dir), removed on close.
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 30_000,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

async function newPage(width = 1280, height = 800) {
  const context = await browser.newContext({ viewport: { width, height } });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  page.on('pageerror', (e) => { console.log(`page error: ${e.message}`); process.exitCode = 1; });
  return { context, page };
}

/** Waits until the page's main view has loaded (aria-busy false). */
const settled = (page) => page.locator('main[aria-busy="false"]').waitFor();

/** Nothing a page renders may be a stringified object or a missing value. */
async function clean(page) {
  const text = await page.locator('main').innerText();
  const junk = /\[object |\bundefined\b|\bnull\b|\bNaN\b/.exec(text);
  assert.equal(junk, null, `rendered junk on ${page.url()}: ${junk && text.slice(Math.max(0, junk.index - 80), junk.index + 40)}`);
}

async function go(page, route, heading) {
  await page.getByRole('link', { name: route, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: heading || route }).waitFor();
  await settled(page);
  await clean(page);
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`) });

async function signIn(page, key) {
  await page.goto(CONSOLE);
  await page.getByLabel('Admin API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** A proxied call with `key`: status and the headers the upstream echoed. */
async function callProxy(key) {
  const r = await fetch(`${PROXY_URL}/echo/echo-headers`, { headers: { Authorization: `Bearer ${key}` } });
  const body = await r.json().catch(() => ({}));
  return { status: r.status, headers: body.headers || {} };
}

async function adminApi(method, path, body) {
  const r = await fetch(`${ADMIN_URL}${path}`, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_KEY}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, data: await r.json().catch(() => null) };
}

async function fillDialog(page, values) {
  const dlg = page.getByRole('dialog');
  for (const [label, value] of Object.entries(values)) {
    const input = dlg.getByLabel(label, { exact: true });
    if (typeof value === 'boolean') await input.setChecked(value);
    else if ((await input.evaluate((el) => el.tagName)) === 'SELECT') await input.selectOption(value);
    else await input.fill(value);
  }
  return dlg;
}

let failed = false;
try {
  const { context, page } = await newPage();

  step('a wrong key cannot sign in; the error is next to the field');
  await signIn(page, `${ADMIN_KEY.slice(0, -1)}${ADMIN_KEY.endsWith('A') ? 'B' : 'A'}`);
  const keyField = page.getByLabel('Admin API key');
  await page.locator('#' + (await keyField.getAttribute('aria-describedby'))).filter({ hasText: 'not valid' }).waitFor();
  assert.equal(await keyField.getAttribute('aria-invalid'), 'true');
  assert.equal(await page.getByRole('navigation', { name: 'Console' }).isVisible(), false);
  await shot(page, 'sign-in');

  step('sign in with the admin key: the overview');
  await keyField.fill(ADMIN_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  await settled(page);
  await page.getByRole('heading', { name: 'Readiness' }).waitFor();
  await page.getByText('Generation').waitFor();
  assert.equal(await keyField.count(), 0, 'the sign-in field is gone');

  step('tokens: one with prefix Bearer in Authorization, one in X-API-Key');
  await go(page, 'Tokens');
  for (const [name, value, header, prefix] of [
    ['stripe_key', 'sk_live_console_1', 'Authorization', 'Bearer'],
    ['crm_key', 'crm-console-1', 'X-API-Key', ''],
    ['other_auth', 'other-console-1', 'Authorization', ''],
  ]) {
    await page.getByRole('button', { name: 'New token' }).first().click();
    const dlg = await fillDialog(page, { Name: name, Description: `console test ${name}`, Value: value, Header: header, Prefix: prefix });
    secret(value);
    await dlg.getByRole('button', { name: 'Create token' }).click();
    await dlg.waitFor({ state: 'detached' });
    await settled(page);
    await page.getByRole('row').filter({ hasText: name }).waitFor();
  }
  // A field error from the API lands next to its field.
  await page.getByRole('button', { name: 'New token' }).first().click();
  let dlg = await fillDialog(page, { Name: 'bad_header', Value: 'x', Header: 'Bad Header' });
  await dlg.getByRole('button', { name: 'Create token' }).click();
  const headerInput = dlg.getByLabel('Header', { exact: true });
  await page.waitForFunction((el) => el.getAttribute('aria-invalid') === 'true', await headerInput.elementHandle());
  const headerError = await page.locator('#' + (await headerInput.getAttribute('aria-describedby'))).textContent();
  assert.ok(headerError.length > 0, 'the header field names its problem');
  await dlg.getByRole('button', { name: 'Cancel' }).click();
  // The YAML token is read-only and says where it comes from.
  const yamlRow = page.getByRole('row').filter({ hasText: 'yaml_token' });
  await yamlRow.getByText('from config file').waitFor();
  assert.equal(await yamlRow.getByRole('button').count(), 0, 'no actions on a config token');
  assert.ok(!(await page.content()).includes('sk_live_console_1'), 'a value is never shown back');
  await shot(page, 'tokens');

  step('connector to the upstream with both tokens; the unique-header rule as you tick');
  await go(page, 'Connectors');
  await page.getByRole('button', { name: 'New connector' }).first().click();
  dlg = await fillDialog(page, { Name: 'echo', 'Upstream URL': UPSTREAM_URL, 'Static headers': 'X-Console: yes', Timeout: '30s' });
  await dlg.getByLabel('stripe_key').check();
  await dlg.getByLabel('other_auth').check();
  await dlg.getByRole('alert').filter({ hasText: 'same header' }).waitFor();
  assert.ok(await dlg.getByRole('button', { name: 'Create connector' }).isDisabled());
  await dlg.getByLabel('other_auth').uncheck();
  await dlg.getByLabel('crm_key').check();
  assert.ok(await dlg.getByRole('button', { name: 'Create connector' }).isEnabled());
  await dlg.getByRole('button', { name: 'Create connector' }).click();
  await dlg.waitFor({ state: 'detached' });
  await settled(page);
  const echoRow = page.getByRole('row').filter({ hasText: `${PROXY_URL}/echo/` });
  await echoRow.getByText('curl -H "Authorization: Bearer $KEYGATE_KEY"').waitFor();
  const yamlConnector = page.getByRole('row').filter({ hasText: 'from_yaml' });
  await yamlConnector.getByText('from config file').waitFor();
  assert.equal(await yamlConnector.getByRole('button', { name: /Delete/ }).count(), 0);
  await shot(page, 'connectors');

  step('a role granting the connector, a client holding it');
  await go(page, 'Clients & roles');
  await page.getByRole('button', { name: 'New role' }).click();
  dlg = await fillDialog(page, { 'Role name': 'echo_caller', Connector: 'echo', Methods: 'GET', Paths: '' });
  await dlg.getByRole('button', { name: 'Create role' }).click();
  await dlg.waitFor({ state: 'detached' });
  await settled(page);
  await page.getByRole('button', { name: 'New client' }).click();
  dlg = await fillDialog(page, { 'Client name': 'echo_app' });
  await dlg.getByLabel('echo_caller').check();
  await dlg.getByRole('button', { name: 'Create client' }).click();
  await dlg.waitFor({ state: 'detached' });
  await settled(page);
  await page.getByRole('row').filter({ hasText: 'echo_app' }).getByText('echo_caller').waitFor();
  await clean(page);
  await shot(page, 'clients-roles');

  step('an API key, read from the shown-once dialog');
  await go(page, 'API keys');
  await page.getByRole('button', { name: 'Create key' }).first().click();
  dlg = await fillDialog(page, { Client: 'echo_app', 'Key name': 'browser-made', 'Expires in': '30d' });
  await dlg.getByRole('button', { name: 'Create key' }).click();
  const once = page.getByRole('dialog').filter({ has: page.getByRole('heading', { name: 'Copy your new API key' }) });
  await once.waitFor();
  const key = await once.getByLabel('New API key').inputValue();
  secret(key);
  assert.match(key, /^kg_/);
  await once.getByText('only time').waitFor();
  await shot(page, 'key-shown-once');
  await once.getByRole('button', { name: 'Done' }).click();
  await page.locator('dialog').waitFor({ state: 'detached' });
  const html = await page.content();
  const at = html.indexOf(key);
  assert.ok(at < 0, `the key is gone from the page: …${at >= 0 ? html.slice(Math.max(0, at - 200), at).replaceAll(key, '<KEY>') : ''}`);
  await settled(page);
  await page.getByRole('row').filter({ hasText: 'browser-made' }).waitFor();
  await page.getByLabel('Filter by client').selectOption('echo_app');
  assert.equal(await page.locator('tbody tr').count(), 1, 'the filter shows the one key');
  await shot(page, 'keys');

  step('the proxy with that key: the upstream sees both headers');
  let r = await callProxy(key);
  assert.equal(r.status, 200, JSON.stringify(r));
  assert.equal(r.headers.authorization, 'Bearer sk_live_console_1');
  assert.equal(r.headers['x-api-key'], 'crm-console-1');
  assert.equal(r.headers['x-console'], 'yes');

  step('replace a value in the UI: the next call carries it');
  await go(page, 'Tokens');
  await page.getByRole('button', { name: 'Set value of stripe_key' }).click();
  dlg = await fillDialog(page, { 'New value': 'sk_live_console_2' });
  secret('sk_live_console_2');
  await dlg.getByRole('button', { name: 'Save value' }).click();
  await dlg.waitFor({ state: 'detached' });
  r = await callProxy(key);
  assert.equal(r.headers.authorization, 'Bearer sk_live_console_2');

  step('no key in storage, the URL or a readable cookie');
  const leaks = await page.evaluate(([a, b]) => {
    const all = [JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage }), location.href, document.cookie];
    return all.filter((s) => s.includes(a) || s.includes(b) || s.includes('keygate_session'));
  }, [ADMIN_KEY, key]);
  assert.deepEqual(leaks, []);
  const cookie = (await context.cookies()).find((c) => c.name === 'keygate_session');
  assert.ok(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', JSON.stringify(cookie && { ...cookie, value: '…' }));

  step('a change without the CSRF token is refused');
  const csrf = await page.evaluate(async () => {
    const resp = await fetch('/api/v1/keys', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ client: 'echo_app', name: 'forged' }) });
    return { status: resp.status, code: resp.headers.get('keygate-error') };
  });
  assert.deepEqual(csrf, { status: 403, code: 'csrf_rejected' });

  step('revoke the key in the UI: the next call answers 401');
  await go(page, 'API keys');
  await page.getByRole('button', { name: 'Revoke browser-made' }).click();
  dlg = page.getByRole('dialog');
  await dlg.getByRole('button', { name: 'Revoke key' }).click();
  await dlg.waitFor({ state: 'detached' });
  r = await callProxy(key);
  assert.equal(r.status, 401);
  await settled(page);
  await page.getByRole('row').filter({ hasText: 'browser-made' }).getByText('revoked').waitFor();

  step('roll a key in the UI: a successor shown once, the old one in its grace');
  const toRoll = await adminApi('POST', '/api/v1/keys', { client: 'echo_app', name: 'to-roll' });
  assert.equal(toRoll.status, 201);
  secret(toRoll.data.key);
  await go(page, 'Tokens');
  await go(page, 'API keys');
  await page.getByRole('button', { name: 'Roll to-roll' }).click();
  dlg = await fillDialog(page, { 'Grace period': '1h' });
  await dlg.getByRole('button', { name: 'Roll key' }).click();
  const rolled = page.getByRole('dialog').filter({ has: page.getByRole('heading', { name: 'Copy your new API key' }) });
  const successor = await rolled.getByLabel('New API key').inputValue();
  secret(successor);
  assert.notEqual(successor, toRoll.data.key);
  await rolled.getByRole('button', { name: 'Done' }).click();
  await page.locator('dialog').waitFor({ state: 'detached' });
  assert.equal((await callProxy(successor)).status, 200);
  assert.equal((await callProxy(toRoll.data.key)).status, 200, 'the old key works during its grace');

  step('audit and overview pages');
  await go(page, 'Audit');
  await page.getByRole('row').filter({ hasText: 'key.revoke' }).first().waitFor();
  await shot(page, 'audit');
  await go(page, 'Overview');
  await page.getByText('requests/s').waitFor({ timeout: 15_000 });
  await clean(page);
  await shot(page, 'overview');

  step('keyboard: Tab reaches the nav with a visible focus ring');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return { tag: el.tagName, text: el.textContent, outline: style.outlineStyle };
  });
  assert.equal(focused.tag, 'A', JSON.stringify(focused));
  assert.notEqual(focused.outline, 'none');

  step('390 px wide: no sideways scrolling, the nav still there');
  const narrow = await newPage(390, 844);
  await narrow.context.addCookies(await context.cookies());
  await narrow.page.goto(`${CONSOLE}#/tokens`);
  await narrow.page.getByRole('heading', { level: 1, name: 'Tokens' }).waitFor();
  await settled(narrow.page);
  assert.ok(await narrow.page.getByRole('link', { name: 'API keys' }).isVisible());
  const width = await narrow.page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `page is ${width}px wide`);
  await shot(narrow.page, 'tokens-390');
  await narrow.context.close();

  step('a session ends when its admin key is revoked');
  const second = await adminApi('POST', '/api/v1/keys', { client: 'keygate-admin', name: 'second-admin' });
  assert.equal(second.status, 201);
  secret(second.data.key);
  const other = await newPage();
  await signIn(other.page, second.data.key);
  await other.page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  assert.equal((await adminApi('DELETE', `/api/v1/keys/${second.data.id}`)).status, 204);
  await go(other.page, 'Tokens').catch(() => {});
  await other.page.getByLabel('Admin API key').waitFor();
  await other.page.getByText('session ended').waitFor();
  await other.context.close();

  step('sign out: the old cookie no longer works');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Admin API key').waitFor();
  const after = await fetch(`${ADMIN_URL}/api/v1/keys`, { headers: { Cookie: `keygate_session=${cookie.value}` } });
  assert.equal(after.status, 401);
  assert.equal(after.headers.get('keygate-error'), 'session_expired');
  await context.close();
} catch (e) {
  failed = true;
  console.log(`FAILED: ${e.stack || e}`);
} finally {
  await browser.close();
}
if (failed || process.exitCode) process.exit(1);
console.log('console browser tests: all steps passed');
