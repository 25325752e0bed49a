/**
 * Incremental Server-Sent Events parser (WHATWG event-stream rules): handles events split
 * across chunks, multi-byte characters split across chunks, CRLF/CR/LF line ends, comments,
 * multi-line data. `data: [DONE]` (OpenAI's terminator) is reported as an ordinary event;
 * `parseSse` stops after it.
 */
export interface SseEvent {
  /** `event:` field, `message` when absent. */
  event: string;
  /** `data:` lines joined with `\n`. */
  data: string;
  id?: string;
  retry?: number;
}

export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private retry: number | undefined;
  private readonly decoder = new TextDecoder('utf-8');
  private sawBom = false;
  /** A trailing CR was the last char of the previous chunk; a LF opening the next chunk belongs to it. */
  private pendingCr = false;

  /** Feeds bytes or text; returns the events completed by this chunk. */
  push(chunk: Uint8Array | string): SseEvent[] {
    let text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!this.sawBom && text.length > 0) {
      this.sawBom = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text.length === 0) return [];
    if (this.pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (;;) {
      let end = -1;
      let next = -1;
      for (let i = start; i < this.buffer.length; i++) {
        const c = this.buffer.charCodeAt(i);
        if (c === 10) {
          end = i;
          next = i + 1;
          break;
        }
        if (c === 13) {
          end = i;
          if (i + 1 < this.buffer.length) next = this.buffer.charCodeAt(i + 1) === 10 ? i + 2 : i + 1;
          else {
            next = i + 1;
            this.pendingCr = true;
          }
          break;
        }
      }
      if (end === -1) break;
      this.line(this.buffer.slice(start, end), events);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** End of stream: a final event without a blank line is dropped, as the spec says. */
  end(): SseEvent[] {
    const rest = this.decoder.decode();
    const events = rest ? this.push(rest) : [];
    this.buffer = '';
    this.data = [];
    return events;
  }

  private line(line: string, out: SseEvent[]): void {
    if (line === '') {
      if (this.data.length > 0) {
        const ev: SseEvent = { event: this.event || 'message', data: this.data.join('\n') };
        if (this.id !== undefined) ev.id = this.id;
        if (this.retry !== undefined) ev.retry = this.retry;
        out.push(ev);
      }
      this.data = [];
      this.event = '';
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) return; // comment / keep-alive
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
  }
}

/** Parses an SSE body incrementally; ends after `data: [DONE]` or at the end of the body. */
export async function* parseSse(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<SseEvent> {
  const parser = new SseParser();
  for await (const chunk of body) {
    for (const ev of parser.push(chunk)) {
      yield ev;
      if (ev.data === '[DONE]') return;
    }
  }
  for (const ev of parser.end()) {
    yield ev;
    if (ev.data === '[DONE]') return;
  }
}
