/**
 * Character-level language model helpers: tokenizer (tokenizer.json next to model.json),
 * chat prompt format, seeded sampling. Pure JS, no tfjs.
 */
import type { ChatMessage } from 'capibara-mcp';
import { mulberry32 } from 'capibara-mcp/sdk';

export interface CharTokenizerJson {
  type: 'char-lm';
  version: 1;
  /** Number of previous tokens the model sees (its input width). */
  contextLength: number;
  /** Token id → character. Id `padId` is padding, `eosId` ends a document. */
  vocab: string[];
  padId: number;
  eosId: number;
  /** How chats are turned into prompts. */
  chat?: { roles?: Partial<Record<ChatMessage['role'], string>>; stop?: string[] };
}

export class CharTokenizer {
  readonly contextLength: number;
  readonly vocab: readonly string[];
  readonly padId: number;
  readonly eosId: number;
  readonly roles: Record<ChatMessage['role'], string>;
  readonly chatStop: readonly string[];
  private readonly ids = new Map<string, number>();

  constructor(readonly json: CharTokenizerJson) {
    if (json.type !== 'char-lm' || !Array.isArray(json.vocab) || !(json.contextLength > 0)) {
      throw new Error('tokenizer.json is not a char-lm tokenizer (type, vocab, contextLength)');
    }
    this.contextLength = json.contextLength;
    this.vocab = json.vocab;
    this.padId = json.padId;
    this.eosId = json.eosId;
    json.vocab.forEach((c, i) => {
      if (i !== json.padId && i !== json.eosId) this.ids.set(c, i);
    });
    this.roles = { system: 'System', user: 'User', assistant: 'Assistant', tool: 'Tool', ...json.chat?.roles };
    this.chatStop = json.chat?.stop ?? [`\n${this.roles.user}:`];
  }

  get vocabSize(): number {
    return this.vocab.length;
  }

  /** Id of one character: itself, its lower-case or accent-free form, else a space. */
  idOf(ch: string): number {
    const direct = this.ids.get(ch);
    if (direct !== undefined) return direct;
    for (const alt of [ch.toLowerCase(), ch.normalize('NFD').replace(/\p{Diacritic}/gu, ''), ch === '\t' || ch === '\r' ? ' ' : '']) {
      const id = alt.length === 1 ? this.ids.get(alt) : undefined;
      if (id !== undefined) return id;
    }
    return this.ids.get(' ') ?? this.padId;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    for (const ch of text) out.push(this.idOf(ch));
    return out;
  }

  decodeOne(id: number): string {
    return id === this.padId || id === this.eosId ? '' : (this.vocab[id] ?? '');
  }

  /** Fills `out` (length contextLength) with the last tokens of `ids`, left-padded. */
  window(ids: readonly number[], out: Int32Array, offset = 0): void {
    const c = this.contextLength;
    const start = ids.length - c;
    for (let i = 0; i < c; i++) out[offset + i] = start + i >= 0 ? ids[start + i]! : this.padId;
  }

  /** Renders a chat as "Role: content" lines and an open assistant turn. */
  chatPrompt(messages: readonly ChatMessage[]): string {
    const lines = messages.map((m) => `${this.roles[m.role] ?? m.role}: ${m.content.trim()}`);
    return `${lines.join('\n')}\n${this.roles.assistant}:`;
  }
}

/** Seeded PRNG for sampling, floats in [0, 1). Same seed ⇒ same sequence. */
export function seededRandom(seed: number): () => number {
  return mulberry32((Math.trunc(seed) ^ 0x9e3779b9) >>> 0);
}

export interface SamplingOptions {
  /** 0 ⇒ greedy (argmax). */
  temperature: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK: number;
  /** Nucleus: keep the smallest set whose probability reaches topP (1 = all). */
  topP: number;
  /** Token ids never sampled (padding). */
  banned?: readonly number[];
}

/** Samples one token id from logits. Deterministic given `rand`. */
export function sampleLogits(logits: ArrayLike<number>, opts: SamplingOptions, rand: () => number): number {
  const n = logits.length;
  const banned = new Set(opts.banned ?? []);
  if (opts.temperature <= 0) {
    let best = -1;
    let bestV = -Infinity;
    for (let i = 0; i < n; i++)
      if (!banned.has(i) && logits[i]! > bestV) {
        bestV = logits[i]!;
        best = i;
      }
    return best;
  }
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (!banned.has(i) && Number.isFinite(logits[i]!)) idx.push(i);
  idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
  let keep = idx;
  if (opts.topK > 0 && opts.topK < keep.length) keep = keep.slice(0, opts.topK);
  const max = logits[keep[0]!]!;
  let probs = keep.map((i) => Math.exp((logits[i]! - max) / opts.temperature));
  let sum = probs.reduce((a, b) => a + b, 0);
  if (opts.topP > 0 && opts.topP < 1) {
    let acc = 0;
    let cut = probs.length;
    for (let j = 0; j < probs.length; j++) {
      acc += probs[j]! / sum;
      if (acc >= opts.topP) {
        cut = j + 1;
        break;
      }
    }
    keep = keep.slice(0, cut);
    probs = probs.slice(0, cut);
    sum = probs.reduce((a, b) => a + b, 0);
  }
  let r = rand() * sum;
  for (let j = 0; j < probs.length; j++) {
    r -= probs[j]!;
    if (r <= 0) return keep[j]!;
  }
  return keep[keep.length - 1]!;
}

/**
 * Tracks generated text against stop sequences so streamed chunks never contain a stop
 * sequence or a part of one that might still complete.
 */
export class StopMatcher {
  private text = '';
  private emitted = 0;
  constructor(private readonly stops: readonly string[]) {}

  /** Adds text; returns what may be emitted now and whether a stop sequence completed. */
  push(piece: string): { emit: string; stopped: boolean } {
    this.text += piece;
    let cut = -1;
    for (const s of this.stops) {
      if (!s) continue;
      const at = this.text.indexOf(s, Math.max(0, this.emitted - s.length + 1));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      const emit = this.text.slice(this.emitted, cut);
      this.text = this.text.slice(0, cut);
      this.emitted = cut;
      return { emit, stopped: true };
    }
    // Hold back the longest suffix that is a prefix of some stop sequence.
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.text.length - this.emitted); k > hold; k--) {
        if (this.text.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    const upto = this.text.length - hold;
    const emit = this.text.slice(this.emitted, upto);
    this.emitted = upto;
    return { emit, stopped: false };
  }

  /** Text not yet emitted (held back); call at the end when no stop matched. */
  flush(): string {
    const rest = this.text.slice(this.emitted);
    this.emitted = this.text.length;
    return rest;
  }

  get fullText(): string {
    return this.text;
  }
}
