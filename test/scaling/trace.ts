/** A replayed load trace: phases of a number of closed-loop clients, each sending one request after another. */
export interface Phase {
  name: string;
  /** Concurrent clients during the phase (a ramp goes from `clients` to `to` in steps). */
  clients: number;
  to?: number;
  ms: number;
}

export interface Outcome {
  at: number;
  ok: boolean;
  code?: string;
  instance?: string;
  ms: number;
}

/** Runs the phases in order with `send` (one request; resolves with its outcome); answers every outcome. */
export async function replay(phases: readonly Phase[], send: () => Promise<Omit<Outcome, 'at' | 'ms'>>, onPhase?: (p: Phase) => void): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let want = 0;
  let live = 0;
  let done = false;
  const client = async (id: number) => {
    while (!done && id < want) {
      const t = Date.now();
      const r = await send().catch((err: unknown) => ({ ok: false, code: String((err as Error).message) }));
      outcomes.push({ ...r, at: t, ms: Date.now() - t });
    }
    live--;
  };
  const setClients = (n: number) => {
    want = n;
    while (live < want) void client(live++);
  };
  for (const p of phases) {
    onPhase?.(p);
    const steps = p.to === undefined ? 1 : Math.max(1, Math.abs(p.to - p.clients));
    for (let i = 0; i < steps; i++) {
      setClients(p.to === undefined ? p.clients : Math.round(p.clients + ((p.to - p.clients) * i) / Math.max(1, steps - 1)));
      await new Promise((r) => setTimeout(r, p.ms / steps));
    }
  }
  done = true;
  while (live > 0) await new Promise((r) => setTimeout(r, 20));
  return outcomes;
}
