import { z } from 'zod';

/** `limits`: request and token limits per principal, API key, IP and model. */
export const limitsConfigSchema = z.strictObject({}).prefault({});
export type LimitsConfig = z.output<typeof limitsConfigSchema>;
