/** A granted admission: the holder runs, then releases it (once; later calls do nothing). */
export interface AdmissionTicket {
  release(): void;
}

/** The ticket of a request admission does not count (no limit on the model, or no capacity and no hold: the router decides). */
export const PASS: AdmissionTicket = Object.freeze({ release() {} });
