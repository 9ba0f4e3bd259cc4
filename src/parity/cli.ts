import { parseArgs } from 'node:util';
import { selectBackend } from '../backend/select.js';
import { runParity } from './runner.js';

// npm run parity -- <dir> [--backend cpu|wasm|tensorflow|cuda]
// Always in float32 (backend 'cuda' with precision 'fp32'): the fixtures hold the reference's float32 numbers.
// Exit codes: 0 every case run passed, 1 a case failed or no case was run, 2 a bad command line or an error.
const USAGE = 'usage: npm run parity -- <fixtures dir> [--backend cpu|wasm|tensorflow|cuda]';

/** A command line that cannot be run: its message, then the usage. */
class UsageError extends Error {
  override name = 'UsageError';
}

const OPTIONS = { backend: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

/** parseArgs, its refusals (an unknown flag, a missing value) as UsageErrors. */
function parse(args: string[]): ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>> {
  try {
    return parseArgs({ args, allowPositionals: true, options: OPTIONS });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message.split('\n')[0] : String(e));
  }
}

function parseCommandLine(args: string[]): { help: true } | { help: false; dir: string; backend?: string } {
  const { values, positionals } = parse(args);
  if (values.help) return { help: true };
  if (positionals.length !== 1) throw new UsageError(`expected one fixtures folder, got ${positionals.length}`);
  return { help: false, dir: positionals[0], backend: values.backend };
}

async function main(): Promise<void> {
  const cmd = parseCommandLine(process.argv.slice(2));
  if (cmd.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const { dir, backend } = cmd;
  await selectBackend(backend, { precision: 'fp32' });
  const results = await runParity(dir, (r) => console.log(r.line));
  const passed = results.filter((r) => r.status === 'PASS').length;
  const failed = results.filter((r) => r.status === 'FAIL').length;
  // a run that checked nothing must not look like a pass
  if (passed + failed === 0) console.log(results.length === 0 ? `no parity cases found in ${dir}` : `no supported parity cases in ${dir} (${results.length} skipped)`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 || passed === 0 ? 1 : 0);
}

main().catch((e: unknown) => {
  // one line, not a stack (a loaded wasm backend would rethrow an unhandled rejection with its whole module source)
  console.error(`parity: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
  if (e instanceof UsageError) console.error(USAGE);
  process.exit(2);
});
