import { selectBackend } from '../backend/select.js';
import { runParity } from './runner.js';

// npm run parity -- <dir> [--backend cpu|wasm|tensorflow|cuda]
// Always in float32 (backend 'cuda' with precision 'fp32'): the fixtures hold the reference's float32 numbers.
const USAGE = 'usage: npm run parity -- <fixtures dir> [--backend cpu|wasm|tensorflow|cuda]';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    process.exit(0);
  }
  const bi = args.indexOf('--backend');
  const backend = bi >= 0 ? args.splice(bi, 2)[1] : undefined;
  const dir = args[0];
  if (!dir) {
    console.error(USAGE);
    process.exit(2);
  }
  await selectBackend(backend, { precision: 'fp32' });
  const results = await runParity(dir, (r) => console.log(r.line));
  const passed = results.filter((r) => r.status === 'PASS').length;
  const failed = results.filter((r) => r.status === 'FAIL').length;
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
}

main().catch((e: unknown) => {
  // one line, not a stack (a loaded wasm backend would rethrow an unhandled rejection with its whole module source)
  console.error(`parity: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
});
