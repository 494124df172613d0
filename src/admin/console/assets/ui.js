// DOM helpers. Everything is built with createElement/textContent: no
// markup from data, so nothing an API returns can become script (and the
// CSP forbids inline script and style anyway).

/** h('button.primary', {type: 'button', onclick}, 'Save') */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let seq = 0;
export const uid = (p) => `${p}-${++seq}`;

/** "3 min ago" style age of an RFC 3339 time; '—' for none. */
export function age(iso) {
  if (!iso) return '—';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

export function badge(text, kind = '') {
  return h(`span.badge${kind ? `.${kind}` : ''}`, {}, text);
}

/** The read-only mark of an object the config file owns. */
export function ownerBadge(obj) {
  if (obj.source !== 'config') return badge('API', '');
  const file = obj.file || 'the config file';
  return h('span.badge.file', { title: `read-only here: edit ${file}` }, `from config file ${file}`);
}

/** A page: sets the title and the busy flag while `load` runs. */
export async function page(main, title, load) {
  main.setAttribute('aria-busy', 'true');
  document.title = `${title} · keygate`;
  try {
    await load();
  } catch (e) {
    if (e && e.code === 'session_expired') return;
    main.append(h('p.form-error', { role: 'alert' }, `Could not load: ${e.message}`));
  } finally {
    main.setAttribute('aria-busy', 'false');
  }
}

/** A table with a skeleton of `rows` rows until `fill(tbody)` is called. */
export function table(columns, rows = 3) {
  const tbody = h('tbody');
  for (let i = 0; i < rows; i += 1) {
    tbody.append(h('tr.skeleton', {}, columns.map(() => h('td'))));
  }
  const wrap = h('div.table-wrap', {},
    h('table', {}, h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))), tbody));
  return {
    el: wrap,
    fill(items, row, empty) {
      tbody.replaceChildren();
      if (!items.length) {
        tbody.append(h('tr', {}, h('td.empty', { colSpan: columns.length }, empty)));
        return;
      }
      for (const it of items) tbody.append(row(it));
    },
  };
}

/** A modal dialog, created now and removed when closed. */
export function dialog(title, body) {
  const id = uid('dlg');
  const dlg = h('dialog', { 'aria-labelledby': id });
  const opener = document.activeElement;
  // Removed at once, not on the (queued) `close` event, so nothing it
  // showed — a new key — outlives the click that closed it.
  const close = () => {
    if (!dlg.isConnected) return;
    if (dlg.open) dlg.close();
    dlg.remove();
    if (opener && opener.isConnected) opener.focus();
  };
  dlg.append(body(close, h('h2', { id }, title)));
  dlg.addEventListener('close', close);
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

/**
 * A form in a dialog. `fields` are built by `field()`/`checks()`; `submit`
 * gets the values and returns a promise; API errors land next to the field
 * their JSON pointer names (`pointerOf` maps a pointer to a field name),
 * the rest at the top.
 */
export function formDialog({ title, fields, submitLabel, submit, danger = false, intro = null, pointerOf = (p) => p.split('/')[1] }) {
  return dialog(title, (close, heading) => {
    const top = h('div.form-error', { role: 'alert' });
    const button = h(`button.primary${danger ? '.danger' : ''}`, { type: 'submit' }, submitLabel);
    const form = h('form', { novalidate: true }, heading, intro, top, fields.map((f) => f.el),
      h('div.buttons', {}, h('button', { type: 'button', onclick: close }, 'Cancel'), button));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      top.textContent = '';
      for (const f of fields) f.setError('');
      const values = {};
      for (const f of fields) if (f.name) values[f.name] = f.value();
      button.disabled = true;
      try {
        await submit(values, close);
      } catch (e) {
        let placed = false;
        for (const p of (e.problems || [])) {
          const f = fields.find((x) => x.name && x.name === pointerOf(p.pointer || ''));
          if (f) { f.setError(p.message); placed = true; } else top.append(h('div', {}, `${p.pointer}: ${p.message}`));
        }
        if (!placed || !(e.problems || []).length) {
          const f = fields.find((x) => x.name && x.name === fieldFromMessage(e, fields));
          if (f) f.setError(e.message); else if (!top.textContent) top.textContent = e.message;
        }
        const bad = form.querySelector('[aria-invalid="true"]');
        if (bad) bad.focus();
      } finally {
        button.disabled = fields.some((f) => f.blocks && f.blocks());
      }
    });
    form.submitButton = button;
    for (const f of fields) if (f.attach) f.attach(form);
    return form;
  });
}

/** An error without a pointer that names a field in backticks (`name`). */
function fieldFromMessage(e, fields) {
  const m = /`([a-z_]+)`/.exec(e.message || '');
  return m && fields.some((f) => f.name === m[1]) ? m[1] : null;
}

/** One labelled input. type: text | password | select | textarea | checkbox. */
export function field(name, label, { type = 'text', value = '', options = [], hint = '', required = false, autocomplete = 'off' } = {}) {
  const id = uid(name);
  const errId = `${id}-err`;
  const err = h('div.error', { id: errId, role: 'alert' });
  let input;
  if (type === 'select') {
    input = h('select', { id, name }, options.map((o) => {
      const [v, t] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, t);
    }));
  } else if (type === 'textarea') {
    input = h('textarea', { id, name }, value);
  } else if (type === 'checkbox') {
    input = h('input', { id, name, type: 'checkbox', checked: Boolean(value) });
  } else {
    input = h('input', { id, name, type, value, autocomplete, spellcheck: 'false', required });
  }
  input.setAttribute('aria-describedby', errId);
  const el = type === 'checkbox'
    ? h('div.field', {}, h('div.check', {}, input, h('label', { for: id }, label)), err)
    : h('div.field', {}, h('label', { for: id }, label), input, hint ? h('div.hint', {}, hint) : null, err);
  return {
    name, el, input,
    value: () => (type === 'checkbox' ? input.checked : input.value),
    setError(msg) {
      err.textContent = msg;
      if (msg) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    },
  };
}

/** A fieldset of checkboxes, one per item; value() is the checked names. */
export function checks(name, legend, items, { checked = [], hint = (i) => '', onchange = null } = {}) {
  const errId = uid(`${name}-err`);
  const err = h('div.error', { id: errId, role: 'alert' });
  const boxes = items.map((it) => {
    const id = uid(name);
    const box = h('input', { type: 'checkbox', id, value: it, checked: checked.includes(it), 'aria-describedby': errId });
    const label = h('label', { for: id }, it);
    const note = hint(it);
    return { it, box, el: h('div.check', {}, box, label, note ? h('span.muted', {}, note) : null) };
  });
  const fs = h('fieldset', {}, h('legend', {}, legend),
    boxes.length ? boxes.map((b) => b.el) : h('p.muted', {}, 'None yet.'));
  const f = {
    name, el: h('div.field', {}, fs, err),
    value: () => boxes.filter((b) => b.box.checked).map((b) => b.it),
    setError(msg) { err.textContent = msg; },
  };
  if (onchange) {
    f.attach = (form) => {
      const run = () => onchange(f, form);
      for (const b of boxes) b.box.addEventListener('change', run);
      run();
    };
  }
  return f;
}

/** A confirmation dialog; resolves after `action` succeeds. */
export function confirm({ title, text, label, action }) {
  return formDialog({ title, fields: [], submitLabel: label, danger: true, intro: h('p', {}, text), submit: async (_, close) => { await action(); close(); } });
}

/** Copies `text`; falls back to selecting `input` when the clipboard API is unavailable. */
export async function copy(text, input, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    if (input) { input.focus(); input.select(); }
    button.textContent = 'Selected: press Ctrl+C';
  }
}

/** A paging bar: Previous / Next over an in-memory list. */
export function pager(total, pageSize, at, go) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  return h('div.bar', {},
    h('button', { type: 'button', disabled: at === 0, onclick: () => go(at - 1) }, 'Previous page'),
    h('span.muted', {}, `Page ${at + 1} of ${pages} · ${total} in all`),
    h('button', { type: 'button', disabled: at + 1 >= pages, onclick: () => go(at + 1) }, 'Next page'));
}
