import { WanError } from '../errors.js';
import { DEFAULT_BLOCKLIST } from './blocklist.js';

/** A clip's frames for a checker: `count` frames of `height` × `width`, each rgb24 [H, W, 3] uint8 from `frame(i)`. */
export interface SafetyFrames {
  readonly count: number;
  readonly height: number;
  readonly width: number;
  frame(i: number): Promise<Uint8Array>;
}

/** What a checker sees: the frames about to be written and the prompt that made them. */
export interface SafetyInput {
  readonly frames: SafetyFrames;
  readonly prompt?: string;
}

/** A checker's answer: passed, or flagged with the reason (and the frame, when one frame is the cause). */
export type SafetyVerdict = { readonly flagged: false } | { readonly flagged: true; readonly reason: string; readonly frame?: number };

/** Looks at a clip before it is written; a flagged verdict stops the write. */
export type SafetyChecker = (input: SafetyInput) => SafetyVerdict | Promise<SafetyVerdict>;

/** A clip was flagged by the safety checker and not written: `reason` is the checker's, `frame` the frame it named. */
export class SafetyError extends WanError {
  constructor(
    readonly reason: string,
    readonly frame?: number,
  ) {
    super(`flagged by the safety checker${frame !== undefined ? ` at frame ${frame}` : ''}: ${reason}; nothing was written`);
  }
}

/** Lower case without diacritics (NFKD, combining marks removed). */
function fold(text: string): string {
  return text.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
}

function words(text: string): string[] {
  return text.match(/[\p{L}\p{N}]+/gu) ?? [];
}

const HAN = /\p{Script=Han}/u;

/**
 * The terms of `terms` that `text` contains, case- and diacritic-insensitively: as whole words (a
 * term of several words as the same consecutive words), or for a term in Chinese script anywhere.
 */
export function blockedTerms(text: string, terms: readonly string[]): string[] {
  const folded = fold(text);
  const ws = words(folded);
  return terms.filter((term) => {
    const t = fold(term);
    if (HAN.test(t)) return folded.includes(t);
    const tw = words(t);
    if (tw.length === 0) return false;
    for (let i = 0; i + tw.length <= ws.length; i++) if (tw.every((w, j) => ws[i + j] === w)) return true;
    return false;
  });
}

export interface BlocklistOptions {
  /** The terms in place of DEFAULT_BLOCKLIST. */
  readonly terms?: readonly string[];
  /** Terms added to the list (DEFAULT_BLOCKLIST or `terms`). */
  readonly extra?: readonly string[];
}

/** The blocklist's verdict on a prompt: flagged when it holds a listed term (see blockedTerms), naming the terms found. */
export function promptVerdict(prompt: string | undefined, options: BlocklistOptions = {}): SafetyVerdict {
  const terms = [...(options.terms ?? DEFAULT_BLOCKLIST), ...(options.extra ?? [])];
  const found = prompt === undefined ? [] : blockedTerms(prompt, terms);
  return found.length ? { flagged: true, reason: `the prompt contains the blocked term${found.length > 1 ? 's' : ''} ${found.map((t) => `"${t}"`).join(', ')}` } : { flagged: false };
}

/** The prompt blocklist as a checker (the default of saveVideo's safetyChecker). */
export function promptBlocklist(options: BlocklistOptions = {}): SafetyChecker {
  return ({ prompt }) => promptVerdict(prompt, options);
}

/** A SafetyError with the verdict's reason when it is flagged. */
export function throwIfFlagged(verdict: SafetyVerdict): void {
  if (verdict.flagged) throw new SafetyError(verdict.reason, verdict.frame);
}

/** Runs `checker` on `input`; a SafetyError with the verdict's reason when it flags the clip. */
export async function runSafetyChecker(checker: SafetyChecker, input: SafetyInput): Promise<void> {
  throwIfFlagged(await checker(input));
}
