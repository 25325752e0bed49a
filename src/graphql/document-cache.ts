/**
 * Parsing and validation of GraphQL documents, bounded: the parser stops at the configured token
 * count, parsed documents are kept in an LRU bounded by the bytes of their text (documents above a
 * size are never kept), and validation results are kept per parsed document (so they go with it).
 * Replaces Yoga's own cache, which is bounded by entry count only: 20 distinct 4 MB documents
 * filled the heap.
 */
import { GraphQLError, parse, type DocumentNode, type ParseOptions, type Source } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/** A least-recently-used map bounded by the summed size of its keys (document text, UTF-16 code units ≈ bytes). */
export class ByteLru<V> {
  private readonly entries = new Map<string, V>();
  private used = 0;

  constructor(
    readonly maxBytes: number,
    readonly maxEntryBytes: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The bytes of keys held. */
  get bytes(): number {
    return this.used;
  }

  get(key: string): V | undefined {
    const v = this.entries.get(key);
    if (v === undefined) return undefined;
    // Refresh recency: Map keeps insertion order, so re-inserting moves it to the end.
    this.entries.delete(key);
    this.entries.set(key, v);
    return v;
  }

  /** Keeps the value unless its key is over the per-entry bound; evicts the oldest entries past the total. */
  set(key: string, value: V): void {
    if (key.length > this.maxEntryBytes || key.length > this.maxBytes) return;
    if (this.entries.delete(key)) this.used -= key.length;
    this.entries.set(key, value);
    this.used += key.length;
    for (const oldest of this.entries.keys()) {
      if (this.used <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.used -= oldest.length;
    }
  }
}

export interface DocumentLimits {
  /** Most lexical tokens per document. */
  maxTokens: number;
  /** Bytes of document text kept parsed. */
  cacheMaxBytes: number;
  /** Largest document kept, bytes. */
  cacheMaxDocumentBytes: number;
}

/** The GraphQL error of a document over the token limit (a parse error: MCP_BAD_REQUEST, graphqlCode TOKEN_LIMIT). */
function tokenLimitError(maxTokens: number): GraphQLError {
  return new GraphQLError(`Syntax Error: the document has more than ${maxTokens} tokens.`, {
    extensions: { code: 'MCP_BAD_REQUEST', graphqlCode: 'TOKEN_LIMIT', http: { status: 400 } },
  });
}

/** The envelop plugin: token-limited parse, byte-bounded document cache, validation cache per document. */
export function useBoundedDocuments(limits: DocumentLimits): Plugin {
  const documents = new ByteLru<DocumentNode>(limits.cacheMaxBytes, limits.cacheMaxDocumentBytes);
  // Keyed by the parsed document: an entry lives as long as its document (cached or in use).
  const validations = new WeakMap<DocumentNode, readonly Error[]>();
  const limitedParse = (source: string | Source, options?: ParseOptions): DocumentNode => {
    try {
      return parse(source, { ...options, maxTokens: limits.maxTokens });
    } catch (err) {
      if (err instanceof GraphQLError && /Document contains more tha[nt] \d+ tokens/.test(err.message)) throw tokenLimitError(limits.maxTokens);
      throw err;
    }
  };
  return {
    onParse({ params, setParsedDocument, setParseFn }) {
      const text = typeof params.source === 'string' ? params.source : params.source.body;
      const hit = documents.get(text);
      if (hit) {
        setParsedDocument(hit);
        return;
      }
      setParseFn(limitedParse);
      return ({ result }) => {
        if (result && !(result instanceof Error)) documents.set(text, result as DocumentNode);
      };
    },
    onValidate({ params, setResult }) {
      const cached = validations.get(params.documentAST);
      if (cached) {
        setResult(cached);
        return;
      }
      return ({ result }) => {
        validations.set(params.documentAST, result);
      };
    },
  };
}
