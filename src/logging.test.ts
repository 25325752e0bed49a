import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { logSerializers } from './logging.ts';

describe('log serializers', () => {
  it('cut the text and parameters of a failed statement, keeping the start and the sizes', () => {
    const lines: string[] = [];
    const logger = pino(
      { serializers: logSerializers },
      new Writable({
        write(c, _e, cb) {
          lines.push(String(c));
          cb();
        },
      }),
    );
    const params = Array.from({ length: 200 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const err = Object.assign(
      new Error(`Failed query: select * from instances where version_id in (${params.map((_, i) => `$${i + 1}`).join(', ')})\nparams: ${params.join(',')}`),
      { query: 'select …', params },
    );
    logger.error({ err }, 'unexpected GraphQL error');
    const line = JSON.parse(lines[0]!) as { err: { message: string; params: string[]; type: string; stack: string } };
    expect(lines[0]!.length).toBeLessThan(7000);
    expect(line.err.type).toBe('Error');
    expect(line.err.message.startsWith('Failed query: select * from instances')).toBe(true);
    expect(line.err.message).toMatch(/… \(\d+ chars\)$/);
    expect(line.err.params).toHaveLength(21);
    expect(line.err.params[20]).toBe('… (200 items)');
    const short = new Error('short');
    logger.error({ err: short }, 'x');
    expect(JSON.parse(lines[1]!).err.message).toBe('short');
  });
});
