/** Where the CLI writes, and what it reads from its environment (a test passes its own). */
export interface CliIO {
  stdout: { write(data: string | Uint8Array): unknown };
  stderr: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  env: Readonly<Record<string, string | undefined>>;
  /** Aborts a running generation (the CLI wires Ctrl-C, SIGTERM and SIGHUP to it). */
  signal?: AbortSignal;
  /**
   * While generate writes its output, a function here removes, synchronously, the temporary files
   * of that write (the forced exit of a second signal calls them, as it cannot wait for saveVideo).
   */
  cleanups?: Set<() => void>;
}
