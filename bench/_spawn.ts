/**
 * Waiting for a benchmark's child process to say it is ready: the first match of `re` in its
 * stderr (e.g. `gateway listening on (https://...)`), after which its stderr keeps being drained
 * so the child never blocks on a full pipe. The one home of this wait for the benchmarks.
 *
 * @module
 */

/** Resolves with the first capture group of `re` in `proc`'s stderr; throws if it exits first. */
export async function waitLine(proc: ReturnType<typeof Bun.spawn>, re: RegExp): Promise<string> {
  const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`process exited: ${text}`);
    text += new TextDecoder().decode(value);
    const m = re.exec(text);
    if (m) {
      void (async () => {
        while (!(await reader.read()).done);
      })();
      return m[1]!;
    }
  }
}
