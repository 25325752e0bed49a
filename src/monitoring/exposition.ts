import { Registry, type Metric, type OpenMetricsContentType } from 'prom-client';

/** What a registered metric offers the exposition (prom-client's metrics and ours alike). */
interface Source {
  name: string;
  help: string;
  type: string;
  get(): Promise<{ name: string }> | { name: string };
}

/** Whether the scraper asked for OpenMetrics (Prometheus does by default; curl gets the text format). */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('application/openmetrics-text');
}

/**
 * The registry's metrics in the Prometheus text format, or in OpenMetrics when asked. prom-client
 * switches a registry to OpenMetrics by renaming its counters in place (dropping `_total` for good),
 * so OpenMetrics is rendered from a throw-away registry of views that carry the family name.
 */
export async function renderMetrics(registry: Registry, openMetrics: boolean): Promise<{ contentType: string; body: string }> {
  if (!openMetrics) return { contentType: registry.contentType, body: await registry.metrics() };
  const om = new Registry<OpenMetricsContentType>();
  om.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  for (const m of registry.getMetricsAsArray() as unknown as Source[]) {
    const family = m.type === 'counter' ? m.name.replace(/_total$/, '') : m.name;
    const view = {
      name: family,
      help: m.help,
      type: m.type,
      get: async () => ({ ...(await m.get()), name: family }),
    };
    om.registerMetric(view as unknown as Metric);
  }
  return { contentType: Registry.OPENMETRICS_CONTENT_TYPE, body: await om.metrics() };
}
