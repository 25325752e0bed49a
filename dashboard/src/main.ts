import './style.css';
import { closeConnection, gql, onConnected, subscribe } from './api.ts';
import { LIVE_CHARTS, LineChart, linesOf, type MetricValue } from './charts.ts';
import { AuthError, login, logout, onSessionChange, resume } from './session.ts';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

const loginForm = $<HTMLFormElement>('login');
const app = $('app');
const status = $('status');

interface Viewer {
  id: string;
  roles: string[];
  permissions: string[];
}

interface ModelRow {
  id: string;
  status: string;
  variants: { version: string; weight: number; shadow: boolean }[];
  versions: { version: string; instances: { id: string; backend: string; status: string; health: string }[] }[];
}

interface AlertRow {
  id: string;
  rule: string;
  labels: Record<string, string>;
  value: number | null;
  firedAt: string | null;
  acknowledgedBy: string | null;
  silencedUntil: string | null;
}

/** What runs while signed in; stopped on sign-out. */
let running: { stop(): void } | undefined;

function cell(text: string, className?: string): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function loadModels(): Promise<void> {
  const data = await gql<{ models: { nodes: ModelRow[] } }>(
    '{ models(first: 100) { nodes { id status variants { version weight shadow } versions { version instances { id backend status health } } } } }',
  );
  const rows: HTMLTableRowElement[] = [];
  for (const m of data.models.nodes) {
    for (const v of m.versions) {
      const weight = m.variants.find((x) => x.version === v.version);
      const instances = v.instances.length ? v.instances : [undefined];
      for (const i of instances) {
        const tr = document.createElement('tr');
        tr.dataset.model = m.id;
        tr.append(
          cell(m.id, 'model'),
          cell(v.version),
          cell(weight ? (weight.shadow ? 'shadow' : String(weight.weight)) : '–'),
          cell(i?.id ?? '–'),
          cell(i?.backend ?? '–'),
          cell(i?.status ?? '–'),
          cell(i?.health ?? '–', i ? `health-${i.health}` : undefined),
        );
        rows.push(tr);
      }
    }
  }
  $('models')
    .querySelector('tbody')!
    .replaceChildren(...rows);
}

const ALERTS_QUERY = '{ alerts(state: [FIRING]) { id rule labels value firedAt acknowledgedBy silencedUntil } alertRules { name severity kind metric } }';

interface RuleRow {
  name: string;
  severity: string;
  kind: string;
  metric: string;
}
const SILENCE_MS = 3_600_000;

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function note(text: string): HTMLLIElement {
  const li = document.createElement('li');
  li.className = 'muted';
  li.textContent = text;
  return li;
}

function actionButton(label: string, run: () => Promise<unknown>, after: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.onclick = () => {
    b.disabled = true;
    run()
      .catch((e: unknown) => (status.textContent = `${label}: ${messageOf(e)}`))
      .finally(after);
  };
  return b;
}

/** Earliest silence end among the firing alerts hidden now (the list is read again then). */
let silenceTimer: ReturnType<typeof setTimeout> | undefined;

/** Firing alerts that are not silenced; silence and acknowledge for principals with alerts:write. */
let alertsRead = 0;

async function loadAlerts(canWrite: boolean): Promise<void> {
  const list = $('alerts');
  const mine = ++alertsRead;
  let alerts: AlertRow[];
  let rules: Map<string, RuleRow>;
  try {
    const data = await gql<{ alerts: AlertRow[]; alertRules: RuleRow[] }>(ALERTS_QUERY);
    // An older read answering after a newer one must not overwrite it.
    if (mine !== alertsRead) return;
    alerts = data.alerts;
    rules = new Map(data.alertRules.map((r) => [r.name, r]));
  } catch (e) {
    list.replaceChildren(note(`alerts unavailable: ${messageOf(e)}`));
    return;
  }
  const now = Date.now();
  const shown = alerts.filter((a) => !a.silencedUntil || Date.parse(a.silencedUntil) <= now);
  // A silence that ends publishes no event: read the list again when the first one does.
  const ends = alerts.map((a) => (a.silencedUntil ? Date.parse(a.silencedUntil) : Number.NaN)).filter((t) => t > now);
  clearTimeout(silenceTimer);
  silenceTimer = ends.length ? setTimeout(() => void loadAlerts(canWrite), Math.min(Math.min(...ends) - now + 250, 2 ** 31 - 1)) : undefined;
  if (!shown.length) {
    list.replaceChildren(note('none'));
    return;
  }
  const reload = () => void loadAlerts(canWrite);
  list.replaceChildren(
    ...shown.map((a) => {
      const li = document.createElement('li');
      const rule = rules.get(a.rule);
      const severity = rule?.severity ?? a.labels.severity ?? 'warning';
      li.className = `alert severity-${severity}`;
      li.dataset.alert = a.rule;
      const text = document.createElement('span');
      const scope = Object.entries(a.labels)
        .filter(([k]) => k !== 'alertname' && k !== 'severity')
        .map(([k, v]) => `${k}=${v}`)
        .join(', ');
      const since = a.firedAt ? ` since ${new Date(a.firedAt).toLocaleTimeString()}` : '';
      const value = a.value === null ? '' : ` · value ${a.value.toPrecision(3)}`;
      const ack = a.acknowledgedBy ? ` · acknowledged by ${a.acknowledgedBy}` : '';
      const what = rule ? ` (${rule.kind} on ${rule.metric})` : '';
      text.textContent = `[${severity}] ${a.rule}${what}${scope ? ` {${scope}}` : ''}${since}${value}${ack}`;
      li.append(text);
      if (canWrite) {
        li.append(
          actionButton(
            'Silence 1 h',
            () => gql('mutation($id: ID!, $ms: Int!) { silenceAlert(id: $id, durationMs: $ms) { id } }', { id: a.id, ms: SILENCE_MS }),
            reload,
          ),
        );
        const ackButton = actionButton('Acknowledge', () => gql('mutation($id: ID!) { acknowledgeAlert(id: $id) { id } }', { id: a.id }), reload);
        ackButton.disabled = a.acknowledgedBy !== null;
        li.append(ackButton);
      }
      return li;
    }),
  );
}

let historyChart: LineChart | undefined;

async function loadHistory(): Promise<void> {
  const window = Number(($('history-window') as HTMLSelectElement).value);
  const data = await gql<{
    metrics: { step: number; source: string; series: { metric: string; model: string | null; points: { at: number; value: number }[] }[] };
  }>('query($w: Int!) { metrics(window: $w, filter: { metrics: ["requests_per_second"] }) { step source series { metric model points { at value } } } }', {
    w: window,
  });
  const xs = [...new Set(data.metrics.series.flatMap((s) => s.points.map((p) => p.at)))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const lines = new Map<string, (number | null)[]>();
  const perModel = data.metrics.series.some((s) => s.model !== null);
  for (const s of data.metrics.series) {
    if (perModel && s.model === null) continue;
    const col = xs.map(() => null as number | null);
    for (const p of s.points) col[index.get(p.at)!] = p.value;
    lines.set(s.model ?? 'all models', col);
  }
  historyChart ??= new LineChart($('history'), { id: 'history', title: 'Throughput history', unit: 'req/s' });
  historyChart.replace(xs, lines);
  $('history-note').textContent =
    `${xs.length} points, ${data.metrics.step} s each, from the ${data.metrics.source === 'ROLLUPS' ? 'database rollups' : 'in-memory ring'}`;
}

function startLive(): () => void {
  const grid = $('charts');
  const charts = LIVE_CHARTS.map((spec) => ({ spec, chart: new LineChart(grid, spec) }));
  const stop = subscribe<{ metricsUpdates: { at: number; series: MetricValue[] } }>(
    'subscription { metricsUpdates(intervalMs: 1000, filter: { includeGlobal: true }) { at series { metric model version labels value } } }',
    {},
    ({ metricsUpdates: s }) => {
      status.textContent = `live · ${new Date(s.at).toLocaleTimeString()}`;
      for (const { spec, chart } of charts) chart.push(s.at, linesOf(spec, s.series));
    },
    (message) => {
      status.textContent = `live updates: ${message}`;
    },
  );
  return () => {
    stop();
    for (const { chart } of charts) chart.destroy();
  };
}

/** Alerts read again (debounced) on every `alertEvents` event, on every (re)connection and every minute. */
const ALERTS_DEBOUNCE_MS = 150;
/** Acknowledgements and silences by others publish no event: a slow refresh shows them. */
const ALERTS_REFRESH_MS = 60_000;

function watchAlerts(canWrite: boolean): () => void {
  let pending: ReturnType<typeof setTimeout> | undefined;
  const reload = (): void => {
    if (pending !== undefined) return;
    pending = setTimeout(() => {
      pending = undefined;
      void loadAlerts(canWrite);
    }, ALERTS_DEBOUNCE_MS);
  };
  reload();
  const stopEvents = subscribe<{ alertEvents: { rule: string; to: string } }>('subscription { alertEvents { alertId rule to } }', {}, reload, (message) =>
    $('alerts').replaceChildren(note(`alert events: ${message}`)),
  );
  const stopConnected = onConnected(reload);
  const slow = setInterval(reload, ALERTS_REFRESH_MS);
  return () => {
    stopEvents();
    stopConnected();
    clearInterval(slow);
    clearTimeout(pending);
    clearTimeout(silenceTimer);
  };
}

async function signedIn(): Promise<void> {
  loginForm.hidden = true;
  app.hidden = false;
  $('logout').hidden = false;
  const { me } = await gql<{ me: Viewer }>('{ me { id roles permissions } }');
  $('who').textContent = `${me.id} (${me.roles.join(', ')})`;
  const canWriteAlerts = me.permissions.includes('ALERTS_WRITE');
  const stopLive = startLive();
  const stopAlerts = watchAlerts(canWriteAlerts);
  const refreshModels = (): void => {
    loadModels().catch((e: unknown) => (status.textContent = `models: ${String(e)}`));
  };
  refreshModels();
  loadHistory().catch((e: unknown) => ($('history-note').textContent = `history: ${e instanceof Error ? e.message : String(e)}`));
  const models = setInterval(refreshModels, 2000);
  const history = setInterval(() => void loadHistory().catch(() => undefined), 30_000);
  running = {
    stop: () => {
      clearInterval(models);
      clearInterval(history);
      stopAlerts();
      stopLive();
      historyChart?.destroy();
      historyChart = undefined;
    },
  };
}

function signedOut(): void {
  running?.stop();
  running = undefined;
  closeConnection();
  app.hidden = true;
  $('logout').hidden = true;
  loginForm.hidden = false;
  $('who').textContent = '';
  status.textContent = '';
}

onSessionChange((on) => {
  if (on) signedIn().catch((e: unknown) => (status.textContent = String(e)));
  else signedOut();
});

loginForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const form = new FormData(loginForm);
  $('login-error').textContent = '';
  login(String(form.get('username')), String(form.get('password'))).catch((e: unknown) => {
    $('login-error').textContent = e instanceof AuthError ? e.message : 'sign-in failed';
  });
});
$('logout').addEventListener('click', () => void logout());
$('history-window').addEventListener('change', () => void loadHistory().catch(() => undefined));

void resume();
