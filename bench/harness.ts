import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

// Shared pieces of the bench/ scripts: command-line options, timing statistics and the entry
// appended to bench/RESULTS.md.

export interface TimingStats {
  median: number;
  min: number;
}

export interface BenchOptions {
  runs: number;
  backends: string[];
  record: boolean;
}

/** The value after `--name` on the command line, if any. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** `--runs N` (default 3), `--backends a,b` (default cpu,wasm), `--no-record`. */
export function benchOptions(): BenchOptions {
  return {
    runs: Number(arg('runs') ?? 3),
    backends: (arg('backends') ?? 'cpu,wasm').split(','),
    record: !process.argv.includes('--no-record'),
  };
}

/** Median and minimum of a list of timings in ms (the list is not modified). */
export function stats(times: number[]): TimingStats {
  const t = [...times].sort((a, b) => a - b);
  return { median: t[Math.floor(t.length / 2)], min: t[0] };
}

/** Appends a dated section (machine, command, workload, result lines) to bench/RESULTS.md. */
export function appendResults(entry: { title: string; command: string; workload: string; lines: string[] }): void {
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'RESULTS.md');
  if (!fs.existsSync(file)) fs.writeFileSync(file, '# Benchmark results (appended by the bench/ scripts)\n');
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const text = [
    '',
    `## ${new Date().toISOString().slice(0, 10)} ${entry.title}`,
    `- machine: ${cpu}, ${os.cpus().length} cores, node ${process.version}`,
    `- command: ${entry.command}`,
    `- workload: ${entry.workload}`,
    ...entry.lines.map((l) => `- ${l}`),
    '',
  ].join('\n');
  fs.appendFileSync(file, text);
  console.log(`appended to ${file}`);
}

/** Runs a bench's main function, printing any error and exiting with status 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
