/**
 * `kubernetes`: sets the replicas of a Deployment or StatefulSet through its `scale` subresource
 * (`/apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{name}/scale`) with the pod's in-cluster
 * credentials: the service-account token (read again for every call: it rotates), the cluster CA and
 * KUBERNETES_SERVICE_HOST/PORT, every path injectable. Each change reads the scale first and writes it
 * with that resourceVersion (a merge patch, or a replace with `method: replace`): a 409 conflict (someone
 * else changed it) reads again and retries; 429, 5xx and transport errors retry with exponential backoff
 * (Retry-After honoured) up to `maxAttempts`. In the cluster (no `apiServer`) only the cluster CA (`caFile`,
 * read again for every call: it rotates too) is trusted: a CA file that cannot be read refuses the call
 * (MCP_CONFIG_INVALID) instead of falling back to the system CAs, and a server certificate it does not
 * vouch for fails at once (MCP_UPSTREAM_UNAVAILABLE, `details.tls`), not retried. 401 and 403 fail at
 * once too (MCP_UPSTREAM_ERROR naming the workload). Neither the token nor the CA appears in an error.
 * Pods going away get SIGTERM from Kubernetes: a worker
 * deregisters and finishes its in-flight requests on SIGTERM (worker.drainMs; give the pod a
 * terminationGracePeriodSeconds above it).
 */
import { readFile } from 'node:fs/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { McpError } from '../../errors.ts';
import { parseActuatorOptions, type Actuator, type ScalingTarget } from '../actuator.ts';

const SA = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Config options (scaling.actuators[].options) of a kubernetes actuator. */
export const kubernetesConfig = z.strictObject({
  /** API server base URL (default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT). */
  apiServer: z.string().url().optional(),
  /** Service-account token file, read for every call. */
  tokenFile: z.string().default(`${SA}/token`),
  /**
   * CA bundle (PEM) the API server's certificate is checked against, the only CA trusted (https only).
   * Default: the service account's ca.crt in the cluster; with `apiServer` set and no caFile, the system CAs.
   */
  caFile: z.string().optional(),
  /** Namespace used when a policy names none. */
  namespaceFile: z.string().default(`${SA}/namespace`),
  /** `patch`: merge patch with the resourceVersion read; `replace`: PUT of the Scale object. */
  method: z.enum(['patch', 'replace']).default('patch'),
  /** Attempts per change (conflicts and transient failures), the first included. */
  maxAttempts: z.number().int().min(1).max(20).default(6),
  initialBackoffMs: z.number().int().min(1).max(60_000).default(200),
  maxBackoffMs: z.number().int().min(1).max(300_000).default(5_000),
  /** One call's time limit, ms. */
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
});
export type KubernetesConfig = z.infer<typeof kubernetesConfig>;

/** A policy's options: which workload. */
export const kubernetesTarget = z.strictObject({
  kind: z.enum(['deployment', 'statefulset']).default('deployment'),
  name: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'a Kubernetes object name'),
  namespace: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'a namespace name')
    .optional(),
});
type K8sTarget = z.infer<typeof kubernetesTarget>;

interface Scale {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: { replicas?: number };
  status?: { replicas?: number };
}

/** OpenSSL's and Node's codes for a certificate the client does not accept (a retry will not change it). */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_INVALID',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

interface Answer {
  status: number;
  body: unknown;
  retryAfterMs?: number;
}

export class KubernetesActuator implements Actuator {
  readonly type = 'kubernetes';
  private readonly config: KubernetesConfig;
  /** The agent trusting the CA read last, rebuilt when the file's contents change. */
  private tls: { ca: string | undefined; dispatcher: Dispatcher } | undefined;
  /** The token read last: cut out of anything the API server answers before it reaches a message. */
  private lastToken = '';

  constructor(
    readonly name: string,
    rawConfig: unknown,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.config = parseActuatorOptions(kubernetesConfig, rawConfig, name);
  }

  checkOptions(options: unknown): Record<string, unknown> {
    return parseActuatorOptions(kubernetesTarget, options, this.name);
  }

  private base(): string {
    if (this.config.apiServer) return this.config.apiServer.replace(/\/$/, '');
    const host = this.env.KUBERNETES_SERVICE_HOST;
    const port = this.env.KUBERNETES_SERVICE_PORT ?? '443';
    if (!host)
      throw new McpError('MCP_CONFIG_INVALID', `actuator "${this.name}": not in a cluster (KUBERNETES_SERVICE_HOST unset) and no apiServer configured`, {
        details: { actuator: this.name },
      });
    return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  /** The CA file to trust: the configured one, else the service account's in the cluster; none (system CAs) for an explicit apiServer. */
  private caFile(): string | undefined {
    return this.config.caFile ?? (this.config.apiServer ? undefined : `${SA}/ca.crt`);
  }

  /** The dispatcher for an https API server: trusts the CA file's certificates only. Config errors throw (not retried). */
  private async agent(base: string): Promise<Dispatcher | undefined> {
    if (!base.startsWith('https:')) return undefined;
    const file = this.caFile();
    let ca: string | undefined;
    if (file) {
      ca = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new McpError(
          'MCP_CONFIG_INVALID',
          `actuator "${this.name}": cannot read the cluster CA file ${file} (${err.code ?? 'unreadable'}); not calling the API server without it`,
          {
            details: { actuator: this.name, caFile: file },
          },
        );
      });
      if (!ca.includes('-----BEGIN CERTIFICATE-----'))
        throw new McpError('MCP_CONFIG_INVALID', `actuator "${this.name}": the cluster CA file ${file} holds no PEM certificate`, {
          details: { actuator: this.name, caFile: file },
        });
    }
    if (this.tls?.ca !== ca) {
      const old = this.tls?.dispatcher;
      this.tls = { ca, dispatcher: new Agent({ connect: ca ? { ca } : {} }) };
      void old?.close().catch(() => {});
    }
    return this.tls!.dispatcher;
  }

  private async workload(t: K8sTarget): Promise<{ path: string; label: string }> {
    const ns = t.namespace ?? (await readFile(this.config.namespaceFile, 'utf8').catch(() => 'default')).trim();
    return {
      path: `/apis/apps/v1/namespaces/${ns}/${t.kind === 'statefulset' ? 'statefulsets' : 'deployments'}/${t.name}/scale`,
      label: `${t.kind} ${ns}/${t.name}`,
    };
  }

  /**
   * One call: status and parsed body; transport errors become status 0. A configuration that cannot
   * work (no CA, no cluster) and a certificate the CA does not vouch for throw: retrying will not help.
   */
  private async call(method: 'GET' | 'PATCH' | 'PUT', path: string, body?: unknown): Promise<Answer> {
    const base = this.base();
    const dispatcher = await this.agent(base);
    const token = (await readFile(this.config.tokenFile, 'utf8').catch(() => '')).trim();
    this.lastToken = token;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    try {
      const res = await request(base + path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(dispatcher ? { dispatcher } : {}),
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
      const text = await res.body.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      const ra = Number(res.headers['retry-after']);
      return { status: res.statusCode, body: parsed, ...(Number.isFinite(ra) && ra >= 0 ? { retryAfterMs: ra * 1000 } : {}) };
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
      const tls = [e.code, e.cause?.code].find((c) => c !== undefined && TLS_VERIFY_CODES.has(c));
      if (tls) {
        const trusted = dispatcher && this.tls?.ca ? `the CA in ${this.caFile()}` : 'the system CAs';
        throw new McpError(
          'MCP_UPSTREAM_UNAVAILABLE',
          `actuator "${this.name}": the API server ${base} presented a certificate ${trusted} does not accept (${tls}); not retried`,
          {
            details: { actuator: this.name, status: 0, tls },
          },
        );
      }
      return { status: 0, body: { message: e.message } };
    }
  }

  /** The error for an answer that ends the change; names the workload and the call, never the token. */
  private failure(what: string, workload: string, r: { status: number; body: unknown }): McpError {
    const msg = (r.body as { message?: unknown } | undefined)?.message;
    let detail = typeof msg === 'string' ? msg.slice(0, 300) : '';
    if (this.lastToken) detail = detail.split(this.lastToken).join('[token]');
    const details = { actuator: this.name, workload, status: r.status };
    if (r.status === 401 || r.status === 403) {
      const why =
        r.status === 401
          ? `the API server did not accept the service-account token (${this.config.tokenFile})`
          : `the service account may not ${what.split(' ')[0]!.toLowerCase()} the scale of ${workload} (it needs get, patch and update on ${workload.split(' ')[0]}s/scale)`;
      return new McpError('MCP_UPSTREAM_ERROR', `actuator "${this.name}": ${workload}: ${r.status} ${why}${detail ? `: ${detail}` : ''}; not retried`, {
        details,
      });
    }
    const code = r.status === 0 || r.status >= 500 || r.status === 429 ? 'MCP_UPSTREAM_UNAVAILABLE' : 'MCP_UPSTREAM_ERROR';
    return new McpError(code, `actuator "${this.name}": ${workload}: ${what} answered ${r.status || 'no connection'}${detail ? `: ${detail}` : ''}`, {
      details,
    });
  }

  private async withRetries<T>(
    what: string,
    workload: string,
    signal: AbortSignal,
    attempt: () => Promise<{ done: T } | { retry: Answer; conflict?: boolean }>,
  ): Promise<T> {
    let backoff = this.config.initialBackoffMs;
    let last: Answer = { status: 0, body: undefined };
    for (let n = 1; n <= this.config.maxAttempts; n++) {
      if (signal.aborted) break;
      const r = await attempt();
      if ('done' in r) return r.done;
      last = r.retry;
      if (n === this.config.maxAttempts) break;
      if (!r.conflict) {
        const wait = Math.min(this.config.maxBackoffMs, Math.max(backoff, r.retry.retryAfterMs ?? 0));
        await new Promise((res) => setTimeout(res, wait * (0.5 + Math.random() / 2)));
        backoff = Math.min(this.config.maxBackoffMs, backoff * 2);
      }
    }
    throw this.failure(what, workload, last);
  }

  private static transient(status: number): boolean {
    return status === 0 || status === 429 || status >= 500;
  }

  private async read(path: string): Promise<Answer & { scale?: Scale }> {
    const r = await this.call('GET', path);
    return r.status === 200 ? { ...r, scale: r.body as Scale } : r;
  }

  async current(target: ScalingTarget): Promise<number> {
    const { path, label } = await this.workload(target.options as K8sTarget);
    return this.withRetries<number>(`GET ${path}`, label, AbortSignal.timeout(this.config.timeoutMs * this.config.maxAttempts), async () => {
      const r = await this.read(path);
      if (r.scale) return { done: r.scale.spec.replicas ?? 0 };
      if (!KubernetesActuator.transient(r.status)) throw this.failure(`GET ${path}`, label, r);
      return { retry: r };
    });
  }

  async scaleTo(target: ScalingTarget, desired: number, signal: AbortSignal): Promise<void> {
    const { path, label } = await this.workload(target.options as K8sTarget);
    await this.withRetries(`scale ${path}`, label, signal, async () => {
      const r = await this.read(path);
      if (!r.scale) {
        if (!KubernetesActuator.transient(r.status)) throw this.failure(`GET ${path}`, label, r);
        return { retry: r };
      }
      if (r.scale.spec.replicas === desired) return { done: undefined };
      const rv = r.scale.metadata.resourceVersion;
      const w =
        this.config.method === 'patch'
          ? await this.call('PATCH', path, { metadata: { resourceVersion: rv }, spec: { replicas: desired } })
          : await this.call('PUT', path, {
              apiVersion: 'autoscaling/v1',
              kind: 'Scale',
              metadata: { name: r.scale.metadata.name, namespace: r.scale.metadata.namespace, resourceVersion: rv },
              spec: { replicas: desired },
            });
      if (w.status === 200 || w.status === 201) return { done: undefined };
      if (w.status === 409) return { retry: w, conflict: true };
      if (!KubernetesActuator.transient(w.status)) throw this.failure(`${this.config.method === 'patch' ? 'PATCH' : 'PUT'} ${path}`, label, w);
      return { retry: w };
    });
  }

  async close(): Promise<void> {
    await this.tls?.dispatcher.close();
    this.tls = undefined;
  }
}
