import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, describe, expect, it } from 'vitest';
import { main, signalExitCode, signalHandler, type CliIO } from '../src/cli.js';
import { parseMp4File } from '../src/video/mp4-probe.js';
import { fixtureDir } from './helpers/fixtures.js';

// The CLI as a user meets it (issue 18, items 5–7): help, negative seeds, output paths, empty prompts, signals.
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const CLI = path.join(ROOT, 'src', 'cli.ts');
const T2V = fixtureDir('pipeline-t2v');
const IO_FILE = path.join(T2V, 'io.safetensors');
const EMBEDS = ['--prompt-embeds', `${IO_FILE}:input.prompt_embeds`, '--negative-prompt-embeds', `${IO_FILE}:input.negative_prompt_embeds`];
const SMALL = ['--backend', 'cpu', '--size', '48x32', '--frames', '5', '--steps', '2'];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-cli-io-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function emptyDir(name: string): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    stdout: { write: (s: string | Uint8Array) => (stdout += String(s)) },
    stderr: { write: (s: string) => (stderr += s), isTTY: false },
    env: {},
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** The one line of a refusal (exit 1), after checking it is one line. */
async function refusal(argv: string[]): Promise<string> {
  const r = await run(argv);
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  return lines[0];
}

describe('wan-tfjs flags', () => {
  it('--help after a command prints the usage, exit 0', async () => {
    for (const argv of [['--help'], ['generate', '--help'], ['generate', '-h'], ['inspect', '--help'], ['generate', '--prompt', 'x', '--help']]) {
      const r = await run(argv);
      expect(r.code, argv.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage:/m);
      expect(r.stderr).toBe('');
    }
  });

  it('--seed -1 is a random seed (as the reference\'s --base_seed -1); other negatives are refused naming --seed', async () => {
    const d = emptyDir('seed');
    const r = await run(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--seed', '-1', '--quiet', '--out', path.join(d, 'x.gif')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/seed \d+\)/);
    const line = await refusal(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--seed', '-2', '--out', path.join(d, 'y.gif')]);
    expect(line).toMatch(/^wan-tfjs: --seed: got -2, expected an integer in \[0, \d+\] or -1 \(random\)$/);
    // other numeric flags take negative values the same way (refused by their own range, not by the parser)
    expect(await refusal(['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--steps', '-3', '--out', path.join(d, 'z.gif')])).not.toMatch(/ambiguous/);
  });

  it('--out: an unwritten format, no extension, missing folders are one-line errors; .MP4 is MP4', async () => {
    const d = emptyDir('out');
    const base = ['generate', '--model', T2V, ...EMBEDS, ...SMALL, '--seed', '3', '--quiet'];
    expect(await refusal([...base, '--out', path.join(d, 'x.webm')])).toMatch(/--out .*x\.webm: .webm .*not written.*\.mp4, \.gif or \.png/);
    expect(await refusal([...base, '--out', path.join(d, 'noext')])).toMatch(/--out .*noext: no extension; use \.mp4, \.gif or \.png, or give --format/);
    expect(await refusal([...base, '--out', path.join(d, 'missing', 'deeper', 'x.gif')])).toMatch(`the folder ${path.join(d, 'missing', 'deeper')} does not exist`);
    expect(fs.readdirSync(d)).toEqual([]);
    const r = await run([...base, '--out', path.join(d, 'clip.MP4')]);
    expect(r.code, r.stderr).toBe(0);
    expect(parseMp4File(path.join(d, 'clip.MP4'))).toMatchObject({ frameCount: 5, width: 48, height: 32 });
    // a folder of PNG frames is created, but not the folders above it
    expect(await refusal([...base, '--format', 'png', '--out', path.join(d, 'nope', 'frames')])).toMatch(`the folder ${path.join(d, 'nope')} does not exist`);
  });

  it('an empty or blank prompt is refused naming the prompt', async () => {
    for (const argv of [['generate', ''], ['generate', '  \t '], ['generate', '--prompt', ' ']]) {
      expect(await refusal([...argv, '--backend', 'cpu', '--out', path.join(tmp, 'never.gif')])).toMatch(/^wan-tfjs: the prompt is empty/);
    }
  });
});

interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** The CLI as a process on the toy model; `onStderr` sees its stderr as it comes, with the process to signal. */
function spawnCli(args: string[], onStderr?: (all: string, kill: (s: NodeJS.Signals) => void) => void): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      onStderr?.(err, (s) => p.kill(s));
    });
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(out), stderr: err }));
  });
}

describe('signals', () => {
  it('the first aborts the generation; the second removes the file being written and exits with 128 + its number', () => {
    const ctrl = new AbortController();
    const partial = path.join(emptyDir('forced'), '.wan-tfjs-0123abcd.tmp');
    fs.writeFileSync(partial, 'partial');
    const cleanups = new Set([() => fs.rmSync(partial, { force: true })]);
    let stderr = '';
    const exits: number[] = [];
    const h = signalHandler(ctrl, cleanups, { write: (s: string) => (stderr += s) }, (code) => exits.push(code));
    h.handle('SIGTERM');
    expect([ctrl.signal.aborted, h.received(), exits, fs.existsSync(partial)]).toEqual([true, 'SIGTERM', [], true]);
    h.handle('SIGINT');
    expect([h.received(), exits, fs.existsSync(partial)]).toEqual(['SIGTERM', [130], false]);
    expect(stderr).toBe('\nwan-tfjs: interrupted again; exiting now\n');
    expect([signalExitCode('SIGINT'), signalExitCode('SIGTERM'), signalExitCode('SIGHUP')]).toEqual([130, 143, 129]);
  });
});

describe('wan-tfjs as a process', () => {
  it('--out - writes the MP4 to stdout and nothing else; the log goes to stderr', async () => {
    const r = await spawnCli(['generate', 'a red ball', '--backend', 'cpu', '--steps', '1', '--seed', '2', '--out', '-']);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(emptyDir('stdout'), 'got.mp4');
    fs.writeFileSync(file, r.stdout);
    expect(parseMp4File(file)).toMatchObject({ frameCount: 5, width: 32, height: 32 });
    expect(r.stderr).toMatch(/wrote MP4 to stdout \(5 frames, 32×32/);
  }, 60_000);

  it('--out - only for a single-file format', async () => {
    const r = await spawnCli(['generate', 'a red ball', '--backend', 'cpu', '--format', 'png', '--out', '-']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^wan-tfjs: --out - \(stdout\) takes mp4 or gif, not a folder of PNG frames$/);
    expect(r.stdout.length).toBe(0);
  }, 30_000);

  for (const [sig, code] of [['SIGTERM', 143], ['SIGHUP', 129], ['SIGINT', 130]] as const) {
    it(`${sig} during the denoising aborts the generation, exit ${code}, nothing written`, async () => {
      const d = emptyDir(`sig-${sig}`);
      let sent = false;
      const r = await spawnCli(['generate', 'a red ball', '--backend', 'cpu', '--steps', '20', '--seed', '1', '--out', path.join(d, 'x.gif')], (all, kill) => {
        if (!sent && /^step 1\//m.test(all)) {
          sent = true;
          kill(sig);
        }
      });
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr).toMatch(/interrupted; nothing was written/);
      expect(r.stderr).not.toMatch(/^step 3\//m);
      expect(fs.readdirSync(d)).toEqual([]);
    }, 60_000);
  }

  it('a second Ctrl-C exits at once (130), leaving no file', async () => {
    const d = emptyDir('sig-twice');
    let sent = false;
    const r = await spawnCli(['generate', 'a red ball', '--backend', 'cpu', '--steps', '20', '--seed', '1', '--out', path.join(d, 'x.gif')], (all, kill) => {
      if (!sent && /^step 1\//m.test(all)) {
        sent = true;
        // apart, so they are not merged into one; the first may already have stopped the run
        setTimeout(() => kill('SIGINT'), 100);
        setTimeout(() => kill('SIGINT'), 200);
      }
    });
    // the first may have ended the run already: a second landing as the process exits ends it (signal SIGINT)
    const forced = /interrupted again; exiting now/.test(r.stderr);
    const stopped = /interrupted; nothing was written/.test(r.stderr);
    expect(forced ? r.code === 130 : stopped && (r.code === 130 || r.signal === 'SIGINT'), r.stderr).toBe(true);
    expect(fs.readdirSync(d)).toEqual([]);
  }, 60_000);

  it('two Ctrl-C while the video is written leave no partial file (the video is whole, or there is none)', async () => {
    const d = emptyDir('sig-writing');
    let sent = false;
    const r = await spawnCli(['generate', 'a red ball', '--backend', 'cpu', '--steps', '1', '--seed', '1', '--out', path.join(d, 'x.mp4')], (all, kill) => {
      if (!sent && /^writing /m.test(all)) {
        sent = true;
        kill('SIGINT');
        kill('SIGINT');
      }
    });
    // the signals may land after the write has finished: then the video is complete (exit 0)
    expect(r.code === 130 ? [] : ['x.mp4'], r.stderr).toEqual(fs.readdirSync(d));
    if (r.code === 0) expect(parseMp4File(path.join(d, 'x.mp4'))).toMatchObject({ frameCount: 5 });
  }, 60_000);

  it('the exit codes are documented in --help', () => {
    const p = spawnSync(process.execPath, ['--import', 'tsx', CLI, '--help'], { cwd: ROOT, encoding: 'utf-8' });
    expect(p.stdout).toMatch(/130 .*SIGINT.*143 .*SIGTERM.*129 .*SIGHUP/s);
  });
});
