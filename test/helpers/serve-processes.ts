// `wan-tfjs serve` / `wan-tfjs worker` as child processes for the serving tests: started with tsx
// from the sources on the bundled toy model, output to a log file, killed by `stopAll`.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'src', 'cli.ts');
export const TOY = path.join(ROOT, 'models', 'toy');

/** Runs `wan-tfjs <args>` (WAN_MODEL = the toy model, then `env`), stdout and stderr into `log`; the process is added to `children`. */
export function startCli(children: ChildProcess[], args: string[], env: Record<string, string>, log: string): ChildProcess {
  const p = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, env: { ...process.env, WAN_MODEL: TOY, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = fs.createWriteStream(log);
  p.stdout?.pipe(out);
  p.stderr?.pipe(out);
  children.push(p);
  return p;
}

/** SIGKILLs those of `children` still running. */
export function stopAll(children: readonly ChildProcess[]): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** The server's URL, from its "listening on URL" line. */
export async function listening(p: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    p.stdout?.on('data', (b: Buffer) => {
      text += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(text);
      if (m) resolve(m[1]);
    });
    p.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${text}`)));
  });
}

/** Polls `f` every 100 ms until it returns a value; an Error naming `what` after `ms`. */
export async function until<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
