import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, type CliIO } from '../src/cli.js';
import { modelIdentity, hubRepoId } from '../src/pipeline/model-identity.js';
import { readModelIndex } from '../src/pipeline/model-index.js';
import { defaultModelDir } from '../src/pipeline/default-model.js';
import { findOnPath } from '../src/video/ffmpeg.js';
import { embeddedProvenance, sidecarPath, verifyClip, type ProvenanceInput, type ProvenanceSidecar } from '../src/video/provenance.js';
import { saveVideo, type RawVideo, type SaveVideoOptions } from '../src/video/save-video.js';
import { safetensorsHeaderSha256 } from '../weights/header-hash.js';
import { CheckpointError } from '../src/errors.js';

const FFMPEG = findOnPath('ffmpeg');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-provenance-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function emptyDir(name: string): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** F frames of H×W, each pixel a function of its position and frame. */
function frames(F: number, H: number, W: number): RawVideo {
  const data = new Uint8Array(F * H * W * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + Math.floor(i / (H * W * 3)) * 40) % 256;
  return { data, shape: [F, H, W, 3] };
}

const INPUT: ProvenanceInput = {
  prompt: 'a red circle moving right, café',
  negativePrompt: 'blurry',
  seed: 42,
  steps: 4,
  guidance: 5,
  guidance2: 3,
  libraryVersion: '0.1.0',
  model: { id: 'Wan-AI/Wan2.1-T2V-1.3B-Diffusers', checkpoints: [{ file: 'transformer/diffusion_pytorch_model.safetensors', headerSha256: 'ab'.repeat(32) }] },
  submitter: 'alice',
};

/** A safetensors file: one F32 tensor "w" of `values`, its header padded with spaces to 8 bytes. */
function safetensorsBytes(values: number[], metadata = 'x'): Uint8Array {
  let json = JSON.stringify({ __metadata__: { note: metadata }, w: { dtype: 'F32', shape: [values.length], data_offsets: [0, values.length * 4] } });
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const header = Buffer.from(json, 'utf-8');
  const out = Buffer.alloc(8 + header.length + values.length * 4);
  out.writeBigUInt64LE(BigInt(header.length), 0);
  header.copy(out, 8);
  values.forEach((v, i) => out.writeFloatLE(v, 8 + header.length + i * 4));
  return new Uint8Array(out);
}

describe('safetensorsHeaderSha256', () => {
  it('is the SHA-256 of the 8-byte length and the JSON header, and only of those', async () => {
    const d = emptyDir('header');
    const a = path.join(d, 'a.safetensors');
    const bytes = safetensorsBytes([1, 2, 3]);
    fs.writeFileSync(a, bytes);
    const n = Number(Buffer.from(bytes).readBigUInt64LE(0));
    const expected = createHash('sha256').update(bytes.subarray(0, 8 + n)).digest('hex');
    expect(await safetensorsHeaderSha256(a)).toBe(expected);
    expect(expected).not.toBe(createHash('sha256').update(bytes).digest('hex'));
    // Other weights under the same header: the same hash; another header: another hash.
    const b = path.join(d, 'b.safetensors');
    fs.writeFileSync(b, safetensorsBytes([9, 9, 9]));
    expect(await safetensorsHeaderSha256(b)).toBe(expected);
    const c = path.join(d, 'c.safetensors');
    fs.writeFileSync(c, safetensorsBytes([1, 2, 3], 'y'));
    expect(await safetensorsHeaderSha256(c)).not.toBe(expected);
  });

  it('a file shorter than its stated header, or missing, is a CheckpointError naming it', async () => {
    const d = emptyDir('header-bad');
    const cut = path.join(d, 'cut.safetensors');
    fs.writeFileSync(cut, safetensorsBytes([1, 2, 3]).subarray(0, 20));
    await expect(safetensorsHeaderSha256(cut)).rejects.toThrow(CheckpointError);
    await expect(safetensorsHeaderSha256(cut)).rejects.toThrow(/cut\.safetensors.*runs past the end/);
    await expect(safetensorsHeaderSha256(path.join(d, 'none.safetensors'))).rejects.toThrow(/none\.safetensors: cannot open \(ENOENT\)/);
  });

  it("modelIdentity: the toy model's folder and a header hash per checkpoint file; hub cache folders give the repo id", async () => {
    const dir = defaultModelDir({});
    const id = await modelIdentity(readModelIndex(dir));
    expect(id.id).toBe(path.resolve(dir));
    const files = ['transformer', 'vae', 'text_encoder'].flatMap((c) => fs.readdirSync(path.join(dir, c)).filter((f) => f.endsWith('.safetensors')).map((f) => `${c}/${f}`));
    expect(id.checkpoints.map((c) => c.file).sort()).toEqual(files.sort());
    for (const c of id.checkpoints) {
      const bytes = fs.readFileSync(path.join(dir, c.file));
      expect(c.headerSha256).toBe(createHash('sha256').update(bytes.subarray(0, 8 + Number(bytes.readBigUInt64LE(0)))).digest('hex'));
    }
    expect(hubRepoId('/h/hub/models--Wan-AI--Wan2.1-T2V-1.3B-Diffusers/snapshots/abc')).toBe('Wan-AI/Wan2.1-T2V-1.3B-Diffusers');
    expect(hubRepoId('/models/wan')).toBeUndefined();
  });
});

const CASES: Array<[string, string, Partial<SaveVideoOptions>]> = [
  ['gif', 'clip.gif', {}],
  ['png folder', 'frames', { format: 'png' }],
  ['single png', 'one.png', {}],
  ['mp4 (built-in writer)', 'clip.mp4', { encoder: 'builtin' }],
  ...(FFMPEG ? ([['mp4 (ffmpeg)', 'ff.mp4', { encoder: 'ffmpeg', ffmpegPath: FFMPEG }]] as Array<[string, string, Partial<SaveVideoOptions>]>) : []),
];

/** The content hash as ProvenanceSidecar states it, computed here. */
function expectedHash(p: string): string {
  if (!fs.statSync(p).isDirectory()) return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  const lines = fs.readdirSync(p).sort().map((f) => `${f} ${createHash('sha256').update(fs.readFileSync(path.join(p, f))).digest('hex')}\n`);
  return createHash('sha256').update(lines.join('')).digest('hex');
}

async function runCli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = { stdout: { write: (s: string | Uint8Array) => (stdout += String(s)) }, stderr: { write: (s: string) => (stderr += s) }, env: {} };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

describe('provenance in every format: embedded and in the sidecar', () => {
  it.each(CASES)('%s', async (_, name, extra) => {
    const d = emptyDir(`round-${name}`);
    const file = path.join(d, name);
    const count = name === 'one.png' ? 1 : 3;
    const before = Date.now();
    const saved = await saveVideo(frames(count, 6, 10), file, { fps: 8, provenance: INPUT, metadata: { prompt: INPUT.prompt }, ...extra });
    expect(fs.readdirSync(d).sort()).toEqual([name, `${name}.json`].sort());
    const sidecar = JSON.parse(fs.readFileSync(`${file}.json`, 'utf-8')) as ProvenanceSidecar;
    expect(saved.sidecar?.path).toBe(sidecarPath(file));
    expect(sidecar).toEqual(saved.sidecar?.content);
    expect(sidecar.sha256).toBe(expectedHash(file));
    expect(sidecar.provenance).toEqual({ ...INPUT, numFrames: count, width: 10, height: 6, fps: 8, createdAt: sidecar.provenance.createdAt });
    const at = Date.parse(sidecar.provenance.createdAt);
    expect(at).toBeGreaterThanOrEqual(before - 1000);
    expect(at).toBeLessThanOrEqual(Date.now());
    expect(embeddedProvenance(file, sidecar.format)).toEqual(sidecar.provenance);
    expect(verifyClip(file)).toMatchObject({ ok: true, differences: [] });
    const r = await runCli(['verify', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^OK .*${name}: sha256 ${sidecar.sha256} and its embedded record match .*seed 42, model Wan-AI/Wan2.1-T2V-1.3B-Diffusers`));
  });
});

describe('wan-tfjs verify', () => {
  it('a changed byte in the clip: exit 1 naming the content hash', async () => {
    const d = emptyDir('tamper');
    const file = path.join(d, 'clip.mp4');
    await saveVideo(frames(3, 6, 10), file, { fps: 8, provenance: INPUT, encoder: 'builtin' });
    const bytes = fs.readFileSync(file);
    // A byte of the media data (the mdat box follows ftyp; its samples sit well past byte 100).
    bytes[bytes.length >> 1] ^= 0x01;
    fs.writeFileSync(file, bytes);
    const r = await runCli(['verify', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/clip\.mp4: content sha256 [0-9a-f]{64} differs from the sidecar's [0-9a-f]{64}/);
    expect(r.stdout).toBe('');
  });

  it('an edited sidecar record: exit 1 naming the fields', async () => {
    const d = emptyDir('edited');
    const file = path.join(d, 'clip.gif');
    await saveVideo(frames(3, 6, 10), file, { fps: 8, provenance: INPUT });
    const side = JSON.parse(fs.readFileSync(`${file}.json`, 'utf-8')) as ProvenanceSidecar;
    fs.writeFileSync(`${file}.json`, JSON.stringify({ ...side, provenance: { ...side.provenance, seed: 43, submitter: 'mallory' } }));
    const r = await runCli(['verify', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("embedded record differs from the sidecar's in seed, submitter");
    expect(r.stderr).not.toContain('content sha256');
  });

  it('a missing sidecar or clip: exit 2 naming it', async () => {
    const d = emptyDir('missing');
    const file = path.join(d, 'clip.gif');
    await saveVideo(frames(3, 6, 10), file, { fps: 8 });
    expect(fs.readdirSync(d)).toEqual(['clip.gif']);
    let r = await runCli(['verify', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read the sidecar .*clip\.gif\.json \(ENOENT\)/);
    fs.writeFileSync(`${file}.json`, '{ not json');
    r = await runCli(['verify', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/the sidecar .*clip\.gif\.json is not JSON/);
    await saveVideo(frames(3, 6, 10), path.join(d, 'gone.gif'), { fps: 8, provenance: INPUT });
    fs.rmSync(path.join(d, 'gone.gif'));
    r = await runCli(['verify', path.join(d, 'gone.gif')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read .*gone\.gif \(ENOENT\)/);
  });

  it('generate writes the sidecar with the toy model identity, and verify accepts the clip', async () => {
    const d = emptyDir('generate');
    const out = path.join(d, 'toy.gif');
    const r = await runCli(['generate', 'a red circle moving right', '--backend', 'cpu', '--steps', '2', '--seed', '7', '--out', out, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const side = JSON.parse(fs.readFileSync(`${out}.json`, 'utf-8')) as ProvenanceSidecar;
    const dir = defaultModelDir({});
    expect(side.provenance).toMatchObject({ prompt: 'a red circle moving right', seed: 7, steps: 2, model: await modelIdentity(readModelIndex(dir)) });
    const v = await runCli(['verify', out]);
    expect(v.code, v.stderr).toBe(0);
  }, 60_000);
});
