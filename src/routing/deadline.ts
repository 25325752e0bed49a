/**
 * One request's abort signal: fires when the client goes away (the parent signal) or when the
 * deadline passes. One AbortController and one timer per request — cheaper on the hot path than
 * AbortSignal.timeout + AbortSignal.any. dispose() clears the timer and the parent listener.
 */
export class RequestDeadline {
  readonly signal: AbortSignal;
  /** The deadline (not the client) aborted the request. */
  timedOut = false;
  private readonly ctl = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly onParentAbort: () => void;

  constructor(
    private readonly parent: AbortSignal,
    ms: number,
  ) {
    this.signal = this.ctl.signal;
    this.onParentAbort = () => this.ctl.abort(parent.reason);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.ctl.abort();
    }, ms);
    this.timer.unref();
    if (parent.aborted) this.onParentAbort();
    else parent.addEventListener('abort', this.onParentAbort, { once: true });
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.parent.removeEventListener('abort', this.onParentAbort);
  }
}
