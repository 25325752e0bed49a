import type { PluginDefinition } from 'capibara-mcp';

/** The capability a `greeter` plugin provides. */
export interface Greeter {
  /** The greeting for `name`, e.g. "Hello, Ada!". */
  greet(name: string): string;
}

declare module 'capibara-mcp' {
  interface Capabilities {
    /** Greets people (added by capibara-plugin-greeter). */
    greeter: Greeter;
  }
}

declare const plugin: PluginDefinition<'greeter', { greeting: string; punctuation: string }>;
export default plugin;
