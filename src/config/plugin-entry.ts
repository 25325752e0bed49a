import { z } from 'zod';

export const pluginEntrySchema = z.strictObject({
  /** First-party plugin name (a folder under plugins/), an npm package name, or a file path (relative to the config file). */
  use: z.string().min(1),
  /** Configured name; defaults to the plugin's own name. Lets one plugin be configured twice. */
  name: z
    .string()
    .regex(/^[a-z][a-z0-9-]*$/, 'kebab-case')
    .optional(),
  /** Options passed to the plugin, validated by its own schema. */
  options: z.record(z.string(), z.unknown()).default({}),
  /** When false, a failure at boot is logged and the plugin skipped instead of stopping the start. */
  required: z.boolean().default(true),
});
