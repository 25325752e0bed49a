/** Incremental newline-delimited JSON parsing (the worker stream protocol). */
import { McpError } from '../errors.ts';

/** Yields one parsed value per non-empty line; lines may be split across chunks. */
export async function* parseNdjson(body: AsyncIterable<Uint8Array | string>, maxLineBytes = 16 * 1024 * 1024): AsyncGenerator<unknown> {
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  const parse = (line: string): unknown => {
    try {
      return JSON.parse(line);
    } catch (err) {
      throw new McpError('MCP_UPSTREAM_ERROR', 'the upstream stream sent a line that is not JSON', { cause: err });
    }
  };
  for await (const chunk of body) {
    buffer += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line !== '') yield parse(line);
    }
    if (buffer.length > maxLineBytes) throw new McpError('MCP_UPSTREAM_ERROR', 'the upstream stream sent an over-long line');
  }
  buffer += decoder.decode();
  const last = buffer.trim();
  if (last !== '') yield parse(last);
}
