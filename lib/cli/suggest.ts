/**
 * "Did you mean" for a mistyped flag or command: the one known name close enough to the word
 * typed that it is most likely what was meant. None when nothing is close or two are equally
 * close, so a suggestion is never a guess between several.
 *
 * @module
 */

/** Edits (insert, delete, substitute, swap of neighbours) that turn `a` into `b`. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  return d[a.length]![b.length]!;
}

/**
 * The candidate `word` most likely meant: within a third of its length in edits (at least one),
 * or the only candidate that has it as one of its dash-separated parts (`interval` for
 * `poll-interval`).
 *
 * @example
 * ```ts
 * closest("tokne", ["token", "force"]); // "token"
 * closest("x", ["token", "force"]); // undefined
 * ```
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  candidates = [...new Set(candidates)];
  const limit = Math.max(1, Math.floor(w.length / 3));
  const scored = candidates.map((c) => ({ c, d: editDistance(w, c.toLowerCase()) })).filter((s) => s.d <= limit);
  const best = Math.min(...scored.map((s) => s.d));
  const nearest = scored.filter((s) => s.d === best);
  if (nearest.length === 1) return nearest[0]!.c;
  if (nearest.length > 1) return undefined;
  const parts = w.length >= 3 ? candidates.filter((c) => c.toLowerCase().split("-").includes(w)) : [];
  return parts.length === 1 ? parts[0] : undefined;
}
