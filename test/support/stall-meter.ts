/**
 * How long this process was kept from running: a timer ticks every `tickMs`; when a tick comes
 * late by more than the CPU time the process used meanwhile (its own work, GC), the difference
 * (past `toleranceMs`) is time the machine did not give it. On an idle machine it stays at (or
 * near) 0, however busy the process itself is; on a busy machine it grows by the time lost.
 *
 * The gateway under test, its upstreams and the client share this process. A test that bounds how
 * long the gateway takes to do something (answer at a deadline, notice a dead worker) bounds the
 * gateway's own time: it adds `ms` to its bound, so the claim holds as stated on an idle machine
 * and does not turn into a claim about the scheduler on a busy one.
 */
export interface StallMeter {
  /** Time lost so far (after stop(), the final figure), ms. */
  readonly ms: number;
  /** Stops the timer and freezes the figure; returns it. */
  stop(): number;
}

export function stallMeter(tickMs = 5, toleranceMs = 2): StallMeter {
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  let stalled = 0;
  // Lateness of a tick the process spent running (its own work, GC) is not time lost: only what
  // is left after this process's CPU time in the interval counts.
  const lost = () => {
    const now = performance.now();
    const cpu = process.cpuUsage(lastCpu);
    const l = now - last - tickMs - (cpu.user + cpu.system) / 1000;
    return { now, l: l > toleranceMs ? l : 0 };
  };
  const timer = setInterval(() => {
    const { now, l } = lost();
    stalled += l;
    last = now;
    lastCpu = process.cpuUsage();
  }, tickMs);
  timer.unref();
  let final: number | undefined;
  return {
    // The time since the last tick counts too when the loop is held up right now.
    get ms() {
      return final ?? stalled + lost().l;
    },
    stop() {
      if (final === undefined) {
        clearInterval(timer);
        final = stalled + lost().l;
      }
      return final;
    },
  };
}
