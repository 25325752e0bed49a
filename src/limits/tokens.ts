import type { InferenceInput } from '../inference/types.ts';
import type { LimitsConfig } from './config.ts';

/** Tasks that produce tokens; token limits apply to them only. */
export function isGenerative(input: InferenceInput): boolean {
  return input.task === 'generate' || input.task === 'chat';
}

/** Characters of prompt text the model reads. */
function promptChars(input: InferenceInput): number {
  if (input.task === 'generate') return input.prompt.length;
  if (input.task === 'chat') return input.messages.reduce((n, m) => n + m.content.length, 0);
  return 0;
}

/** Prompt tokens estimated from the prompt's length, plus the chat template's overhead (per message, and the reply's priming). */
export function estimatePromptTokens(input: InferenceInput, est: LimitsConfig['tokenEstimate']): number {
  const template = input.task === 'chat' ? est.messageOverheadTokens * (input.messages.length + 1) : 0;
  return Math.ceil(promptChars(input) / est.charsPerToken) + template;
}

/** What a generative call reserves before it runs: the prompt estimate plus the completion it may produce, bounded. */
export function estimateTokens(input: InferenceInput, est: LimitsConfig['tokenEstimate']): number {
  const params = 'parameters' in input ? input.parameters : undefined;
  const completion = params?.maxTokens ?? est.defaultCompletionTokens;
  return Math.max(1, Math.min(est.maxReservation, estimatePromptTokens(input, est) + completion));
}

/** Tokens a call used: the backend's usage when reported, else the prompt estimate plus the produced text's estimate (0 when nothing ran). */
export function tokensUsed(
  input: InferenceInput,
  est: LimitsConfig['tokenEstimate'],
  outcome: { totalTokens?: number; producedChars: number; ran: boolean },
): number {
  if (outcome.totalTokens !== undefined && Number.isFinite(outcome.totalTokens)) return Math.max(0, outcome.totalTokens);
  if (!outcome.ran) return 0;
  return estimatePromptTokens(input, est) + Math.ceil(outcome.producedChars / est.charsPerToken);
}
