// saveVideo against the file system: names up to NAME_MAX, the system's refusals as typed errors,
// flushes before renames, and what a killed write leaves (tidied by the next write into the folder).
// node:fs is wrapped so a test can make a call fail with an errno code, or "kill" the process after a
// call: every later file-system call then does nothing, as if the process had stopped there.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { decodePng } from '../src/video/png-decoder.js';
import { STALE_TEMP_MS } from '../src/video/output-file.js';
import { saveVideo, type RawVideo } from '../src/video/save-video.js';
import { OutputFileError } from '../src/video/video-error.js';

const fault = vi.hoisted(() => ({
  /** Calls that throw: function name → errno code. */
  codes: new Map<string, string>(),
  /** Called after each real call; true stops the process there. */
  killAfter: undefined as ((name: string, args: readonly unknown[]) => boolean) | undefined,
  killed: false,
  /** Each call: the function, its first argument (a path or a descriptor) and its result. */
  log: [] as Array<[string, unknown, unknown]>,
}));

/** What a test's "kill" throws. */
class Killed extends Error {}

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const wrap =
    <A extends unknown[], R>(name: string, f: (...args: A) => R) =>
    (...args: A): R => {
      if (fault.killed) return undefined as R;
      const code = fault.codes.get(name);
      if (code) throw Object.assign(new Error(`${code}: injected, ${name} '${String(args[0])}'`), { code, syscall: name.replace(/Sync$/, ''), path: String(args[0]) });
      const r = f(...args);
      fault.log.push([name, args[0], r]);
      if (fault.killAfter?.(name, args)) {
        fault.killed = true;
        throw new Killed(`killed after ${name}`);
      }
      return r;
    };
  const names = ['openSync', 'writeSync', 'fsyncSync', 'closeSync', 'renameSync', 'mkdirSync', 'rmSync'] as const;
  const mocked: Record<string, unknown> = { ...real };
  for (const n of names) mocked[n] = wrap(n, real[n] as (...args: unknown[]) => unknown);
  return { ...mocked, default: mocked };
});

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-save-fs-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  fault.codes.clear();
  fault.killAfter = undefined;
  fault.killed = false;
  fault.log.length = 0;
});

function emptyDir(name: string): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** F frames of H×W filled with `value`. */
function frames(F: number, value: number, H = 4, W = 4): RawVideo {
  return { data: new Uint8Array(F * H * W * 3).fill(value), shape: [F, H, W, 3] };
}

/** The error saveVideo rejects with. */
async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('saveVideo succeeded');
    },
    (e: unknown) => e,
  );
}

/** The first pixel value of each frame in a PNG folder. */
function folderValues(folder: string): number[] {
  return fs.readdirSync(folder).sort().map((f) => decodePng(fs.readFileSync(path.join(folder, f))).rgb[0]);
}

/** Sets a file's or folder's modification time `ms` into the past. */
function age(p: string, ms: number): void {
  const t = (Date.now() - ms) / 1000;
  fs.utimesSync(p, t, t);
}

/** A process id that no process has now (a child that has exited). */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid!;
}

const TEMP = /^\.wan-tfjs-[0-9a-f]{8}\.(tmp|old|json)$/;

describe('saveVideo and the file system', () => {
  it('takes a name of 236 to 255 bytes (the temporary name is short); 256 bytes is an OutputFileError naming the path', async () => {
    const d = emptyDir('long-names');
    for (const n of [236, 255]) {
      const gif = `${'é'.repeat((n - 4) >> 1)}${'a'.repeat((n - 4) & 1)}.gif`;
      expect(Buffer.byteLength(gif)).toBe(n);
      await saveVideo(frames(2, 9), path.join(d, gif), { fps: 8 });
      const folder = 'f'.repeat(n);
      await saveVideo(frames(2, 9), path.join(d, folder), { fps: 8, format: 'png' });
      await saveVideo(frames(2, 7), path.join(d, folder), { fps: 8, format: 'png' });
      expect(folderValues(path.join(d, folder))).toEqual([7, 7]);
    }
    const tooLong = path.join(d, `${'b'.repeat(252)}.gif`);
    const e = await failure(saveVideo(frames(2, 9), tooLong, { fps: 8 }));
    expect(e).toBeInstanceOf(OutputFileError);
    expect(e).toMatchObject({ code: 'ENAMETOOLONG', path: tooLong });
    expect(String(e)).toContain(`cannot write ${tooLong}: the name is too long`);
    expect(fs.readdirSync(d).filter((f) => TEMP.test(f))).toEqual([]);
  });

  it('a folder in the way, or a file where a folder should be, is an OutputFileError that says what to do', async () => {
    const d = emptyDir('in-the-way');
    fs.mkdirSync(path.join(d, 'x.gif'));
    const dirErr = await failure(saveVideo(frames(2, 1), path.join(d, 'x.gif'), { fps: 8 }));
    expect(dirErr).toMatchObject({ name: 'OutputFileError', code: 'EISDIR' });
    expect(String(dirErr)).toMatch(/a folder has that name; choose another file name or remove the folder/);
    fs.writeFileSync(path.join(d, 'file'), '');
    const fileErr = await failure(saveVideo(frames(2, 1), path.join(d, 'file', 'x.gif'), { fps: 8 }));
    expect(fileErr).toBeInstanceOf(OutputFileError);
    expect(String(fileErr)).toMatch(/cannot write .*file\/x\.gif: .*(file, not a folder|a file is in the way)/);
    expect(fs.readdirSync(d).sort()).toEqual(['file', 'x.gif']);
  });

  it.each([
    ['openSync', 'EACCES', /permission denied; choose a folder you can write to/],
    ['openSync', 'EROFS', /read-only; write the output to a writable disk/],
    ['mkdirSync', 'EROFS', /read-only/],
    ['writeSync', 'ENOSPC', /no space left on the device; free some space/],
    ['fsyncSync', 'EIO', /input\/output error/],
    ['renameSync', 'EEXIST', /a file is in the way/],
  ])('%s failing with %s: an OutputFileError naming the output, nothing left behind', async (call, code, advice) => {
    for (const [name, options] of [
      ['x.gif', { fps: 8 }],
      ['x.mp4', { fps: 8, encoder: 'builtin' }],
      ['frames', { fps: 8, format: 'png' }],
    ] as const) {
      const d = emptyDir(`${call}-${code}-${name}`);
      const target = path.join(d, 'sub', name);
      fault.codes.set(call, code);
      const e = await failure(saveVideo(frames(3, 1), target, options));
      fault.codes.clear();
      expect(e).toBeInstanceOf(OutputFileError);
      expect(e).toMatchObject({ code, path: target });
      expect(String(e)).toMatch(advice);
      expect((e as Error).cause).toMatchObject({ code });
      expect(fs.readdirSync(d, { recursive: true })).toEqual(call === 'mkdirSync' ? [] : ['sub']);
    }
  });

  it('a cleanup that fails too never hides the first error', async () => {
    const d = emptyDir('cleanup-fails');
    fault.codes.set('writeSync', 'ENOSPC');
    fault.codes.set('rmSync', 'EACCES');
    const e = await failure(saveVideo(frames(3, 1), path.join(d, 'x.gif'), { fps: 8 }));
    expect(e).toMatchObject({ name: 'OutputFileError', code: 'ENOSPC' });
    // The temporary file stayed (its removal failed); it has the recognisable name.
    expect(fs.readdirSync(d)).toEqual([expect.stringMatching(TEMP)]);
  });

  it('flushes the file before renaming it into place, and the folder after', async () => {
    const d = emptyDir('fsync');
    const target = path.join(d, 'x.gif');
    await saveVideo(frames(3, 1), target, { fps: 8 });
    // Each call with its path; a descriptor stands for the path it was last opened from.
    const fds = new Map<unknown, string>();
    const steps = fault.log.map(([name, arg, result]) => {
      if (name === 'openSync') fds.set(result, String(arg));
      return `${name} ${name === 'fsyncSync' ? fds.get(arg) : String(arg)}`;
    });
    const rename = steps.findIndex((s) => s.startsWith('renameSync '));
    const tmp = steps[rename].slice('renameSync '.length);
    expect(path.basename(tmp)).toMatch(TEMP);
    expect(steps.indexOf(`fsyncSync ${tmp}`)).toBeGreaterThan(-1);
    expect(steps.indexOf(`fsyncSync ${tmp}`)).toBeLessThan(rename);
    expect(steps.slice(rename)).toContain(`fsyncSync ${d}`);
  });

  it('what a killed write leaves has a recognisable name and is removed by the next write into the folder once stale', async () => {
    const d = emptyDir('killed');
    let writes = 0;
    fault.killAfter = (name) => name === 'writeSync' && ++writes === 3;
    await expect(saveVideo(frames(4, 1), path.join(d, 'x.gif'), { fps: 8 })).rejects.toThrow(Killed);
    fault.killAfter = undefined;
    fault.killed = false;
    const [left] = fs.readdirSync(d);
    expect(left).toMatch(TEMP);
    // A fresh temporary file may be another process's write in progress: kept.
    await saveVideo(frames(1, 1), path.join(d, 'y.gif'), { fps: 8 });
    expect(fs.readdirSync(d).sort()).toEqual([left, 'y.gif'].sort());
    age(path.join(d, left), STALE_TEMP_MS + 60_000);
    await saveVideo(frames(1, 1), path.join(d, 'y.gif'), { fps: 8 });
    expect(fs.readdirSync(d)).toEqual(['y.gif']);
  });

  it('a PNG folder replacement killed between its renames loses neither folder; the next write completes it', async () => {
    const d = emptyDir('replace-killed');
    const out = path.join(d, 'frames');
    await saveVideo(frames(2, 1), out, { fps: 8, format: 'png' });
    // Killed right after the old folder was renamed aside, before the new one went in.
    fault.killAfter = (name, args) => name === 'renameSync' && String(args[1]).endsWith('.old');
    await expect(saveVideo(frames(3, 2), out, { fps: 8, format: 'png' })).rejects.toThrow(Killed);
    fault.killAfter = undefined;
    fault.killed = false;
    const left = fs.readdirSync(d);
    expect(left.every((f) => TEMP.test(f))).toBe(true);
    expect(left.map((f) => path.extname(f)).sort()).toEqual(['.json', '.old', '.tmp']);
    const temp = (ext: string) => path.join(d, left.find((f) => f.endsWith(ext))!);
    expect(folderValues(temp('.old'))).toEqual([1, 1]);
    expect(folderValues(temp('.tmp'))).toEqual([2, 2, 2]);
    // While the writer may still run (it is this process, and the journal is fresh), nothing is touched.
    await saveVideo(frames(1, 5), path.join(d, 'other.gif'), { fps: 8 });
    expect(fs.readdirSync(d).sort()).toEqual([...left, 'other.gif'].sort());
    // Once the writer is gone, the next write into the folder puts the new frames in place.
    const journal = temp('.json');
    fs.writeFileSync(journal, JSON.stringify({ ...JSON.parse(fs.readFileSync(journal, 'utf-8')), pid: deadPid() }));
    await saveVideo(frames(1, 5), path.join(d, 'other.gif'), { fps: 8 });
    expect(fs.readdirSync(d).sort()).toEqual(['frames', 'other.gif']);
    expect(folderValues(out)).toEqual([2, 2, 2]);
  });

  let replacements = 0;
  it.each([
    ['after the journal, before any rename', (name: string) => name === 'fsyncSync', [3, 3, 3]],
    ['after the new folder went in, before the old one was removed', (name: string, args: readonly unknown[]) => name === 'renameSync' && String(args[1]).endsWith('frames'), [3, 3, 3]],
  ] as const)('a replacement killed %s is completed by the next write (a stale journal)', async (_, killAfter, expected) => {
    const d = emptyDir(`replace-${++replacements}`);
    const out = path.join(d, 'frames');
    await saveVideo(frames(2, 1), out, { fps: 8, format: 'png' });
    let armed = false;
    fault.killAfter = (name, args) => {
      // the journal's own flush is the first fsync after the PNG frames and their folder are flushed
      if (name === 'openSync' && String(args[0]).endsWith('.json')) armed = true;
      return armed && killAfter(name, args);
    };
    await expect(saveVideo(frames(3, 3), out, { fps: 8, format: 'png' })).rejects.toThrow(Killed);
    fault.killAfter = undefined;
    fault.killed = false;
    const journal = fs.readdirSync(d).find((f) => f.endsWith('.json'));
    expect(journal).toMatch(TEMP);
    age(path.join(d, journal!), STALE_TEMP_MS + 60_000);
    await saveVideo(frames(1, 5), path.join(d, 'other.gif'), { fps: 8 });
    expect(fs.readdirSync(d).sort()).toEqual(['frames', 'other.gif']);
    expect(folderValues(out)).toEqual(expected);
  });
});
