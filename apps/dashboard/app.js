// The Bellhop dashboard: one module, no framework, no build. It calls only the public API, with
// the user's bearer token kept in sessionStorage (gone with the tab; never a cookie, so there is
// nothing for another site to ride on). Everything the API returns reaches the page as text
// (DOM nodes and textContent, never HTML): receivers' response bodies and headers are written by
// whoever runs the receiver.

const API = new URL(document.querySelector('meta[name="bellhop-api"]')?.content || '../', location.href);
const TOKEN_KEY = 'bellhop.token';
const PLACE_KEY = 'bellhop.place';
const STATUSES = ['pending', 'succeeded', 'failed', 'cancelled'];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  user: null,
  organizations: [],
  projects: [],
  place: readPlace(),
  // The test delivery just sent, marked in the list until the next one.
  justSent: null,
  // Set when the page itself navigates with a notice to keep (following a link clears the alert).
  keepAlert: false,
  // Bumped on every navigation: a poller started by a view that is gone sees the change and stops.
  view: 0,
};

const main = document.getElementById('main');
const alertBox = document.getElementById('alert');

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, body, requestId) {
    super(body && typeof body.error === 'string' ? body.error : status ? `The API answered ${status}` : 'Could not reach the API');
    this.status = status;
    this.code = body?.code;
    this.requestId = body?.requestId ?? requestId ?? null;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(new URL(path.replace(/^\//, ''), API), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, null, null);
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new ApiError(res.status, data, res.headers.get('X-Request-Id'));
    // A session that ended (expired, revoked, logged out elsewhere) sends the user back to log in,
    // with a notice of its own in place of this error.
    if (res.status === 401 && state.token && path !== '/auth/login') {
      err.handled = true;
      signOut('Your session has ended: log in again.');
    }
    throw err;
  }
  return data;
}

const id = (value) => encodeURIComponent(value);

/** Follows nextCursor to the end (lists the dashboard shows whole: projects, webhooks). */
async function all(path, key) {
  const items = [];
  let cursor = null;
  do {
    const page = await api('GET', `${path}${path.includes('?') ? '&' : '?'}limit=100${cursor ? `&cursor=${id(cursor)}` : ''}`);
    items.push(...page[key]);
    cursor = page.nextCursor ?? null;
  } while (cursor && items.length < 1000);
  return items;
}

// ---------------------------------------------------------------------------------------------
// Building the page: elements and text nodes only

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

function s(tag, props, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setProps(el, props);
  appendAll(el, children);
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'value' || key === 'checked' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function time(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  return h('time', { datetime: iso, title: iso }, date.toLocaleString());
}

function badge(status) {
  return h('span', { class: `badge badge-${status}` }, status);
}

function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', null, label), control, hint ? h('small', null, hint) : null);
}

function facts(pairs) {
  return h(
    'dl',
    { class: 'facts' },
    pairs.filter(Boolean).map(([term, value]) => [h('dt', null, term), h('dd', null, value)]),
  );
}

/** A button that is disabled while its action runs; the action's error goes to the alert. */
function button(label, action, props = {}) {
  const el = h('button', { type: 'button', ...props }, label);
  el.addEventListener('click', async () => {
    el.disabled = true;
    try {
      await action(el);
    } catch (err) {
      showError(err);
    } finally {
      el.disabled = false;
    }
  });
  return el;
}

function showError(err) {
  if (err?.handled) return;
  const message = err instanceof ApiError || err instanceof Error ? err.message : String(err);
  alertBox.className = 'alert alert-error';
  alertBox.replaceChildren(
    h('span', null, message),
    err?.requestId ? h('span', { class: 'request-id' }, ` (request ${err.requestId})`) : null,
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: clearAlert }, '×'),
  );
  alertBox.hidden = false;
}

function showNotice(message) {
  alertBox.className = 'alert alert-notice';
  alertBox.replaceChildren(h('span', null, message), h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: clearAlert }, '×'));
  alertBox.hidden = false;
}

function clearAlert() {
  alertBox.hidden = true;
  alertBox.replaceChildren();
}

/** Runs `step` after `first` ms, then again until it returns true or the view changes, waiting longer each time. */
function poll(step, first = 500) {
  const view = state.view;
  let wait = first;
  const tick = async () => {
    if (view !== state.view) return;
    let done;
    try {
      done = await step();
    } catch (err) {
      if (view === state.view) showError(err);
      return;
    }
    if (!done && view === state.view) {
      wait = Math.min(wait * 1.5, 15000);
      setTimeout(tick, wait);
    }
  };
  setTimeout(tick, first);
}

// ---------------------------------------------------------------------------------------------
// Session and place (organization, project)

function readPlace() {
  try {
    return JSON.parse(sessionStorage.getItem(PLACE_KEY) ?? '{}');
  } catch {
    return {};
  }
}

function savePlace() {
  sessionStorage.setItem(PLACE_KEY, JSON.stringify(state.place));
}

function signOut(message) {
  state.token = null;
  state.user = null;
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById('who').textContent = '';
  document.getElementById('logout').hidden = true;
  if (message) showNotice(message);
  if (location.hash && location.hash !== '#/') {
    state.keepAlert = Boolean(message);
    location.hash = '#/';
  } else route();
}

async function loadAccount() {
  const [me, orgs, projects] = await Promise.all([api('GET', '/auth/me'), api('GET', '/organizations'), all('/projects', 'projects')]);
  state.user = me.user;
  state.organizations = orgs.organizations;
  state.projects = projects;
  document.getElementById('who').textContent = me.user.email;
  document.getElementById('logout').hidden = false;
  const org = state.organizations.find((o) => o.id === state.place.orgId) ?? state.organizations[0];
  state.place.orgId = org?.id ?? null;
  const inOrg = state.projects.filter((p) => p.organizationId === state.place.orgId);
  state.place.projectId = (inOrg.find((p) => p.id === state.place.projectId) ?? inOrg[0])?.id ?? null;
  savePlace();
}

function currentOrg() {
  return state.organizations.find((o) => o.id === state.place.orgId) ?? null;
}

/** Owner and admin see secrets and change webhooks; members read and send tests. */
function canManage() {
  const role = currentOrg()?.role;
  return role === 'owner' || role === 'admin';
}

document.getElementById('logout').addEventListener('click', async () => {
  await api('POST', '/auth/logout').catch(() => undefined);
  sessionStorage.removeItem(PLACE_KEY);
  state.place = {};
  signOut('You are logged out.');
});

// ---------------------------------------------------------------------------------------------
// Screens

async function route() {
  state.view += 1;
  const view = state.view;
  if (!state.token) return loginScreen();
  try {
    if (!state.user) await loadAccount();
    if (view !== state.view) return;
    const [, kind, ref] = /^#\/(?:(webhooks|deliveries)\/([^/]+))?$/.exec(location.hash) ?? [];
    if (kind === 'webhooks') await webhookScreen(decodeURIComponent(ref), view);
    else if (kind === 'deliveries') await deliveryScreen(decodeURIComponent(ref), view);
    else await webhooksScreen(view);
  } catch (err) {
    if (view === state.view && state.token) {
      showError(err);
      show(h('p', { class: 'empty' }, 'This page could not be loaded.'), h('p', null, h('a', { href: '#/' }, 'Back to the webhooks')));
    }
  }
}

function loginScreen() {
  document.title = 'Log in · Bellhop';
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit' }, 'Log in');
  const form = h(
    'form',
    { class: 'card login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in to Bellhop'),
    field('Email', email),
    field('Password', password),
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const { session } = await api('POST', '/auth/login', { email: email.value, password: password.value });
      state.token = session.token;
      sessionStorage.setItem(TOKEN_KEY, session.token);
      clearAlert();
      await route();
    } catch (err) {
      showError(err);
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  show(form);
  email.focus();
}

function placePicker() {
  const orgSelect = h(
    'select',
    {
      name: 'organization',
      onchange: () => {
        state.place = { orgId: orgSelect.value };
        const first = state.projects.find((p) => p.organizationId === orgSelect.value);
        state.place.projectId = first?.id ?? null;
        savePlace();
        route();
      },
    },
    state.organizations.map((o) => h('option', { value: o.id, selected: o.id === state.place.orgId }, `${o.name} (${o.role})`)),
  );
  const projects = state.projects.filter((p) => p.organizationId === state.place.orgId);
  const projectSelect = h(
    'select',
    {
      name: 'project',
      disabled: projects.length === 0,
      onchange: () => {
        state.place.projectId = projectSelect.value;
        savePlace();
        route();
      },
    },
    projects.map((p) => h('option', { value: p.id, selected: p.id === state.place.projectId }, p.name)),
  );
  return h('div', { class: 'toolbar' }, field('Organization', orgSelect), field('Project', projectSelect));
}

async function webhooksScreen(view) {
  const project = state.projects.find((p) => p.id === state.place.projectId);
  document.title = `Webhooks${project ? ` · ${project.name}` : ''} · Bellhop`;
  if (!project) {
    show(placePicker(), h('h1', null, 'Webhooks'), h('p', { class: 'empty' }, 'This organization has no projects yet. Create one with the API or `bellhop projects create`.'));
    return;
  }
  const webhooks = await all(`/projects/${id(project.id)}/webhooks`, 'webhooks');
  if (view !== state.view) return;
  const list = h('div', { class: 'webhooks' });
  for (const webhook of webhooks) list.append(webhookCard(webhook, view));
  show(
    placePicker(),
    h('h1', null, 'Webhooks ', h('span', { class: 'muted' }, project.name)),
    webhooks.length ? list : h('p', { class: 'empty' }, 'No webhooks in this project yet.'),
  );
}

function webhookCard(webhook, view) {
  const chart = h('figure', { class: 'chart', 'aria-busy': 'true' }, h('figcaption', null, 'Last 24 h: loading…'));
  api('GET', `/webhooks/${id(webhook.id)}/stats?window=24h`)
    .then(({ stats }) => view === state.view && chart.replaceWith(statsChart(stats)))
    .catch((err) => view === state.view && chart.replaceChildren(h('figcaption', null, `Last 24 h: ${err.message}`)));
  const titleId = `wh-${webhook.id}`;
  return h(
    'article',
    { class: 'card webhook', 'aria-labelledby': titleId },
    h('header', null, h('h2', { id: titleId }, h('a', { href: `#/webhooks/${id(webhook.id)}` }, webhook.name)), badge(webhook.health.status)),
    h('p', { class: 'url' }, webhook.url),
    health(webhook),
    chart,
    h('div', { class: 'actions' }, h('a', { class: 'button', href: `#/webhooks/${id(webhook.id)}` }, 'Deliveries'), webhookActions(webhook, () => route())),
  );
}

function health(webhook) {
  const { health: hl } = webhook;
  return facts([
    ['Events', webhook.events.join(', ')],
    ['Last delivery', time(hl.lastDeliveryAt)],
    ['Last success', time(hl.lastSuccessAt)],
    hl.failingSince && ['Failing since', time(hl.failingSince)],
    hl.autoDisableAt && ['Auto-disable at', time(hl.autoDisableAt)],
    webhook.disabledReason && ['Disabled because', webhook.disabledReason === 'gone' ? 'the receiver answered 410 Gone' : 'it kept failing'],
  ]);
}

/** Send test, Disable/Enable and Reveal secret; `changed` re-renders after a change. */
function webhookActions(webhook, changed, eventSelect) {
  const secretOut = h('output', { class: 'secret', hidden: true });
  const actions = [
    button('Send test', async () => {
      const body = eventSelect?.value ? { event: eventSelect.value } : {};
      const { delivery } = await api('POST', `/webhooks/${id(webhook.id)}/test`, body);
      state.justSent = delivery.id;
      showNotice(`Test ${delivery.event} sent: ${delivery.id}`);
      if (location.hash === `#/webhooks/${id(webhook.id)}`) return route();
      state.keepAlert = true;
      location.hash = `#/webhooks/${id(webhook.id)}`;
    }),
  ];
  if (canManage()) {
    actions.push(
      button(webhook.enabled ? 'Disable' : 'Enable', async () => {
        await api('PATCH', `/webhooks/${id(webhook.id)}`, { enabled: !webhook.enabled });
        showNotice(`${webhook.name} is ${webhook.enabled ? 'disabled' : 'enabled'}.`);
        await changed();
      }),
      button('Reveal secret', async (el) => {
        if (!secretOut.hidden) {
          secretOut.hidden = true;
          secretOut.replaceChildren();
          el.textContent = 'Reveal secret';
          return;
        }
        const { secret } = await api('GET', `/webhooks/${id(webhook.id)}/secret`);
        secretOut.replaceChildren(h('code', null, secret));
        secretOut.hidden = false;
        el.textContent = 'Hide secret';
      }),
    );
  }
  return [...actions, secretOut];
}

/** The 24 hourly buckets as stacked bars (succeeded under failed), drawn with DOM calls. */
function statsChart(stats) {
  const series = stats.series ?? [];
  const width = 240;
  const height = 60;
  const slot = width / Math.max(series.length, 1);
  const max = Math.max(1, ...series.map((b) => b.succeeded + b.failed));
  const scale = (n) => (n / max) * (height - 2);
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', class: 'bars', 'aria-hidden': 'true' });
  series.forEach((bucket, i) => {
    const x = i * slot + 1;
    const ok = scale(bucket.succeeded);
    const bad = scale(bucket.failed);
    const label = `${new Date(bucket.from).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${bucket.succeeded} succeeded, ${bucket.failed} failed${bucket.p95Ms !== null && bucket.p95Ms !== undefined ? `, p95 ${bucket.p95Ms} ms` : ''}`;
    svg.append(
      s(
        'g',
        null,
        s('title', null, label),
        s('rect', { x, y: 0, width: slot - 2, height, class: 'slot' }),
        s('rect', { x, y: height - ok, width: slot - 2, height: ok, class: 'ok' }),
        s('rect', { x, y: height - ok - bad, width: slot - 2, height: bad, class: 'bad' }),
      ),
    );
  });
  svg.append(s('line', { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: 'axis' }));
  const d = stats.deliveries;
  const rate = stats.successRate === null ? '—' : `${(stats.successRate * 100).toFixed(1)} %`;
  const p95 = stats.latencyMs?.p95 === null || stats.latencyMs?.p95 === undefined ? '—' : `${stats.latencyMs.p95} ms`;
  const summary = `Last 24 h: ${d.succeeded} succeeded, ${d.failed} failed, ${d.pending} pending; success rate ${rate}; p95 ${p95}`;
  return h(
    'figure',
    { class: 'chart', role: 'img', 'aria-label': summary },
    svg,
    h('div', { class: 'chart-axis', 'aria-hidden': 'true' }, h('span', null, '24 h ago'), h('span', null, 'now')),
    h('figcaption', null, summary),
  );
}

async function webhookScreen(webhookId, view) {
  const { webhook } = await api('GET', `/webhooks/${id(webhookId)}`);
  if (view !== state.view) return;
  document.title = `${webhook.name} · Deliveries · Bellhop`;
  const statusFilter = h(
    'select',
    { name: 'status', onchange: () => loadDeliveries(true) },
    h('option', { value: '' }, 'All'),
    STATUSES.map((st) => h('option', { value: st }, st)),
  );
  const concrete = webhook.events.filter((e) => !e.endsWith('*'));
  const eventSelect = h(
    'select',
    { name: 'event' },
    h('option', { value: '' }, concrete.length ? `Default (${concrete[0]})` : 'Default'),
    concrete.map((e) => h('option', { value: e }, e)),
  );
  const rows = h('tbody');
  const more = h('button', { type: 'button', hidden: true, onclick: () => loadDeliveries(false) }, 'Load more');
  const shown = new Map();
  let cursor = null;

  async function loadDeliveries(reset) {
    const status = statusFilter.value;
    const query = `limit=25${status ? `&status=${id(status)}` : ''}${!reset && cursor ? `&cursor=${id(cursor)}` : ''}`;
    more.disabled = true;
    try {
      const page = await api('GET', `/webhooks/${id(webhook.id)}/deliveries?${query}`);
      if (view !== state.view) return;
      if (reset) {
        rows.replaceChildren();
        shown.clear();
      }
      for (const delivery of page.deliveries) addRow(delivery);
      if (reset && shown.size === 0) rows.append(h('tr', null, h('td', { colspan: 7, class: 'empty' }, status ? `No ${status} deliveries.` : 'No deliveries yet.')));
      cursor = page.nextCursor;
      more.hidden = !cursor;
      followPending();
    } catch (err) {
      showError(err);
    } finally {
      more.disabled = false;
    }
  }

  function addRow(delivery) {
    const row = deliveryRow(delivery, delivery.id === state.justSent);
    const old = shown.get(delivery.id);
    if (old) old.replaceWith(row);
    else rows.append(row);
    shown.set(delivery.id, row);
  }

  // Pending deliveries are followed until they finish, so a test that was just sent shows its attempt.
  let following = false;
  function followPending() {
    if (following) return;
    following = true;
    poll(async () => {
      const pending = [...shown.entries()].filter(([, row]) => row.dataset.status === 'pending').slice(0, 10);
      if (pending.length === 0) {
        following = false;
        return true;
      }
      try {
        const fresh = await Promise.all(pending.map(([deliveryId]) => api('GET', `/deliveries/${id(deliveryId)}`)));
        if (view !== state.view) return true;
        // Rows show attempts as a count, as the list route does (past the 20 shown here: "20+").
        for (const { delivery } of fresh) addRow({ ...delivery, attempts: `${delivery.attempts.length}${delivery.attemptsNextCursor ? '+' : ''}` });
        return false;
      } catch (err) {
        following = false;
        throw err;
      }
    });
  }

  const canReplay = canManage();
  show(
    h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, '← Webhooks')),
    h('h1', null, webhook.name, ' ', badge(webhook.health.status)),
    h('p', { class: 'url' }, webhook.url),
    health(webhook),
    h('div', { class: 'actions' }, field('Test event', eventSelect), webhookActions(webhook, () => route(), eventSelect)),
    canReplay ? replayForm(webhook, () => loadDeliveries(true)) : null,
    h(
      'section',
      { 'aria-labelledby': 'deliveries-title' },
      h('div', { class: 'section-head' }, h('h2', { id: 'deliveries-title' }, 'Deliveries'), field('Status', statusFilter)),
      h(
        'table',
        { class: 'deliveries' },
        h('thead', null, h('tr', null, ['Delivery', 'Event', 'Status', 'Attempts', 'Last answer', 'Time', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
        rows,
      ),
      more,
    ),
  );
  await loadDeliveries(true);
}

function deliveryRow(delivery, highlight) {
  return h(
    'tr',
    { class: highlight ? 'highlight' : null, 'data-id': delivery.id, 'data-status': delivery.status },
    h('td', null, h('a', { href: `#/deliveries/${id(delivery.id)}` }, delivery.id), delivery.test ? h('span', { class: 'tag' }, 'test') : null),
    h('td', null, delivery.event),
    h('td', null, badge(delivery.status)),
    h('td', { class: 'num' }, String(delivery.attempts)),
    h('td', { class: 'num' }, delivery.lastStatusCode ?? '—'),
    h('td', { class: 'num' }, delivery.lastResponseTimeMs === null || delivery.lastResponseTimeMs === undefined ? '—' : `${delivery.lastResponseTimeMs} ms`),
    h('td', null, time(delivery.createdAt)),
  );
}

/** Replay failed since…: a dry run says how many match, the user confirms, progress follows. */
function replayForm(webhook, replayed) {
  const since = new Date(Date.now() - 24 * 3600 * 1000);
  since.setSeconds(0, 0);
  const local = new Date(since.getTime() - since.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const from = h('input', { type: 'datetime-local', name: 'from', value: local, required: true });
  const confirm = h('div', { class: 'confirm', hidden: true });
  const progress = h('progress', { max: 1, value: 0, hidden: true });
  const status = h('output', { class: 'replay-status', 'aria-live': 'polite' });

  const start = button('Replay failed since…', async () => {
    if (!from.value) throw new Error('Choose the time to replay from.');
    const fromIso = new Date(from.value).toISOString();
    const { replay } = await api('POST', `/webhooks/${id(webhook.id)}/replay`, { from: fromIso, dryRun: true });
    if (replay.matched === 0) {
      confirm.hidden = true;
      status.textContent = 'No failed deliveries since then.';
      return;
    }
    status.textContent = '';
    confirm.replaceChildren(
      h('span', null, `${replay.matched} failed ${replay.matched === 1 ? 'delivery' : 'deliveries'} since ${new Date(fromIso).toLocaleString()}.`),
      button(`Replay ${replay.matched}`, async () => {
        confirm.hidden = true;
        const { replay: started } = await api('POST', `/webhooks/${id(webhook.id)}/replay`, { from: fromIso });
        follow(started);
      }),
      h('button', { type: 'button', class: 'link', onclick: () => (confirm.hidden = true) }, 'Cancel'),
    );
    confirm.hidden = false;
  });

  function render(replay) {
    const done = replay.succeeded + replay.failed;
    progress.max = Math.max(replay.matched, 1);
    progress.value = done;
    progress.hidden = false;
    status.textContent = `Replay ${replay.id}: ${replay.status}; ${replay.queued} of ${replay.matched} queued, ${replay.succeeded} succeeded, ${replay.failed} failed`;
  }

  function follow(replay) {
    render(replay);
    poll(async () => {
      const { replay: now } = await api('GET', `/replays/${id(replay.id)}`);
      render(now);
      if (now.status === 'running') return false;
      await replayed();
      return true;
    });
  }

  return h(
    'section',
    { class: 'replay', 'aria-labelledby': 'replay-title' },
    h('h2', { id: 'replay-title', class: 'visually-hidden' }, 'Replay'),
    h('div', { class: 'actions' }, field('Failed since', from), start),
    confirm,
    progress,
    status,
  );
}

async function deliveryScreen(deliveryId, view) {
  const { delivery } = await api('GET', `/deliveries/${id(deliveryId)}`);
  if (view !== state.view) return;
  document.title = `${delivery.id} · Bellhop`;
  // The answer holds the 20 most recent attempts, oldest first; older pages come newest first.
  const newest = [...delivery.attempts].reverse();
  const list = h('div', { class: 'attempts' }, newest.map(attemptCard));
  let cursor = delivery.attemptsNextCursor;
  const more = button('Older attempts', async () => {
    const page = await api('GET', `/deliveries/${id(delivery.id)}/attempts?cursor=${id(cursor)}`);
    list.append(...page.attempts.map(attemptCard));
    cursor = page.nextCursor;
    more.hidden = !cursor;
  });
  more.hidden = !cursor;
  const retry = button('Retry', async () => {
    const before = newest[0]?.id ?? null;
    await api('POST', `/deliveries/${id(delivery.id)}/retry`);
    showNotice('Retry queued: one more attempt as soon as possible.');
    // The page is drawn again once the new attempt is recorded.
    poll(async () => {
      const { delivery: now } = await api('GET', `/deliveries/${id(delivery.id)}`);
      if ((now.attempts.at(-1)?.id ?? null) === before) return false;
      await route();
      return true;
    });
  });
  show(
    h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, '← Webhooks'), ' / ', h('a', { href: `#/webhooks/${id(delivery.webhookId)}` }, 'Deliveries')),
    h('h1', null, 'Delivery ', h('code', null, delivery.id), ' ', badge(delivery.status), delivery.test ? h('span', { class: 'tag' }, 'test') : null),
    facts([
      ['Event', delivery.event],
      ['Event id', h('code', null, delivery.eventId)],
      ['Created', time(delivery.createdAt)],
      delivery.nextAttemptAt && ['Next attempt', time(delivery.nextAttemptAt)],
      delivery.completedAt && ['Completed', time(delivery.completedAt)],
    ]),
    h('div', { class: 'actions' }, retry),
    h('h2', null, 'Attempts'),
    newest.length ? list : h('p', { class: 'empty' }, 'No attempt yet.'),
    more,
  );
}

function attemptCard(attempt) {
  const res = attempt.response;
  const outcome = attempt.error ? attempt.error.code : res ? String(res.statusCode) : '—';
  const titleId = `att-${attempt.id}`;
  return h(
    'article',
    { class: 'card attempt', 'aria-labelledby': titleId },
    h(
      'h3',
      { id: titleId },
      `Attempt ${attempt.attempt} `,
      h('span', { class: 'tag' }, attempt.trigger),
      ' ',
      h('span', { class: `badge badge-${attempt.error || !res || res.statusCode >= 300 ? 'failed' : 'succeeded'}` }, outcome),
      attempt.responseTimeMs !== null && attempt.responseTimeMs !== undefined ? h('span', { class: 'muted' }, ` ${attempt.responseTimeMs} ms`) : null,
    ),
    h('p', { class: 'muted' }, time(attempt.timestamp)),
    attempt.error ? h('p', { class: 'error' }, `${attempt.error.code}: ${attempt.error.message}`) : null,
    h(
      'div',
      { class: 'exchange' },
      h(
        'section',
        { 'aria-label': 'Request' },
        h('h4', null, 'Request'),
        h('p', { class: 'url' }, `POST ${attempt.request?.url ?? ''}`),
        headerTable(attempt.request?.headers),
        bodyBlock(attempt.request?.body),
      ),
      h(
        'section',
        { 'aria-label': 'Response' },
        h('h4', null, 'Response'),
        res
          ? [
              h('p', null, `Status ${res.statusCode}`),
              headerTable(res.headers),
              bodyBlock(res.body),
              res.bodyTruncated ? h('p', { class: 'muted' }, 'Body cut at 64 KiB.') : null,
            ]
          : h('p', { class: 'muted' }, 'No response.'),
      ),
    ),
  );
}

function headerTable(headers) {
  const entries = Object.entries(headers ?? {});
  if (entries.length === 0) return h('p', { class: 'muted' }, 'No headers.');
  return h(
    'details',
    null,
    h('summary', null, `Headers (${entries.length})`),
    h(
      'table',
      { class: 'headers' },
      h('tbody', null, entries.map(([name, value]) => h('tr', null, h('th', { scope: 'row' }, name), h('td', null, Array.isArray(value) ? value.join(', ') : String(value))))),
    ),
  );
}

/** A body as text; JSON is laid out for reading. Never parsed as HTML. */
function bodyBlock(body) {
  if (body === null || body === undefined || body === '') return h('p', { class: 'muted' }, 'Empty body.');
  let text = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
  if (typeof body === 'string') {
    try {
      text = JSON.stringify(JSON.parse(body), null, 2);
    } catch {
      // Not JSON: shown as it came.
    }
  }
  return h('pre', { class: 'body', tabindex: 0 }, text);
}

window.addEventListener('hashchange', () => {
  if (!state.keepAlert) clearAlert();
  state.keepAlert = false;
  route();
});
route();
