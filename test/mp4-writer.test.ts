import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFfprobe, findOnPath } from '../src/video/ffmpeg.js';
import { parseMp4File, probeMp4 } from '../src/video/mp4-probe.js';
import { addEmulationPrevention, BitWriter, encodeMp4Pcm, ENCODER_NAME, h264Level, mp4Timing } from '../src/video/mp4-writer.js';
import { VideoEncoderError } from '../src/video/video-error.js';

const FFMPEG = findOnPath('ffmpeg');
const FFPROBE = findFfprobe();

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wan-mp4-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** A seeded LCG in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** F random rgb24 frames of H×W, the full 0–255 range in every channel. */
function noise(F: number, H: number, W: number, seed = 1): Uint8Array[] {
  const r = rng(seed);
  return Array.from({ length: F }, () => Uint8Array.from({ length: H * W * 3 }, () => Math.floor(r() * 256)));
}

// ---- An independent reader: MP4 boxes, H.264 NAL units, SPS / PPS / I_PCM slices ----

/** MSB-first bit reader with Exp-Golomb codes (H.264 7.2, 9.1). */
class BitReader {
  pos = 0;
  constructor(private readonly b: Uint8Array) {}
  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) {
      if (this.pos >= this.b.length * 8) throw new Error('read past the end of the RBSP');
      v = v * 2 + ((this.b[this.pos >> 3] >> (7 - (this.pos & 7))) & 1);
      this.pos++;
    }
    return v;
  }
  ue(): number {
    let zeros = 0;
    while (this.u(1) === 0) zeros++;
    return 2 ** zeros - 1 + this.u(zeros);
  }
  se(): number {
    const k = this.ue();
    return k % 2 ? (k + 1) / 2 : -k / 2;
  }
  get aligned(): boolean {
    return this.pos % 8 === 0;
  }
  bytes(n: number): Uint8Array {
    if (!this.aligned) throw new Error('not byte-aligned');
    const out = this.b.subarray(this.pos / 8, this.pos / 8 + n);
    if (out.length !== n) throw new Error('read past the end of the RBSP');
    this.pos += 8 * n;
    return out;
  }
  /** rbsp_trailing_bits, and nothing after them. */
  trailing(): void {
    expect(this.u(1)).toBe(1);
    while (!this.aligned) expect(this.u(1)).toBe(0);
    expect(this.pos).toBe(this.b.length * 8);
  }
}

/** NAL unit → RBSP: every 0x03 after two zero bytes is an emulation_prevention_three_byte (7.4.1). */
function stripEmulationPrevention(nal: Uint8Array): Uint8Array {
  const out: number[] = [];
  let zeros = 0;
  for (const b of nal) {
    if (zeros === 2 && b === 3) {
      zeros = 0;
      continue;
    }
    expect(zeros === 2 && b < 3, 'a start code prefix inside a NAL unit').toBe(false);
    out.push(b);
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return Uint8Array.from(out);
}

/** Payload ranges of the boxes in buf[start, end). */
function walk(buf: Uint8Array, start: number, end: number): Map<string, { start: number; end: number }> {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = new Map<string, { start: number; end: number }>();
  for (let p = start; p < end; ) {
    let size = dv.getUint32(p);
    let header = 8;
    if (size === 1) {
      size = Number(dv.getBigUint64(p + 8));
      header = 16;
    }
    out.set(Buffer.from(buf.subarray(p + 4, p + 8)).toString('latin1'), { start: p + header, end: p + size });
    expect(size).toBeGreaterThanOrEqual(header);
    p += size;
  }
  return out;
}

function descend(buf: Uint8Array, ...types: string[]): { start: number; end: number } {
  let range = { start: 0, end: buf.length };
  for (const t of types) {
    const offset = t === 'avc1' ? 8 : t === 'avcC' ? 78 : 0; // stsd: full box + entry_count; avc1: sample entry fields
    const r = walk(buf, range.start + offset, range.end).get(t);
    if (!r) throw new Error(`no ${t} box`);
    range = r;
  }
  return range;
}

interface Sps {
  profile: number;
  constraints: number;
  level: number;
  log2MaxFrameNum: number;
  widthMbs: number;
  heightMbs: number;
  width: number;
  height: number;
  matrix: number;
  fullRange: number;
}

/** seq_parameter_set_rbsp (7.3.2.1.1) of a Baseline stream with POC type 2, through the VUI's colour fields. */
function parseSps(rbsp: Uint8Array): Sps {
  const r = new BitReader(rbsp);
  const profile = r.u(8);
  const constraints = r.u(8);
  const level = r.u(8);
  expect(r.ue()).toBe(0); // seq_parameter_set_id
  const log2MaxFrameNum = r.ue() + 4;
  expect(r.ue()).toBe(2); // pic_order_cnt_type
  r.ue(); // max_num_ref_frames
  r.u(1);
  const widthMbs = r.ue() + 1;
  const heightMbs = r.ue() + 1;
  expect(r.u(1)).toBe(1); // frame_mbs_only_flag
  r.u(1);
  const crop = r.u(1) ? [r.ue(), r.ue(), r.ue(), r.ue()] : [0, 0, 0, 0];
  let matrix = 2;
  let fullRange = 0;
  if (r.u(1)) {
    expect(r.u(1)).toBe(0); // aspect_ratio_info_present_flag
    expect(r.u(1)).toBe(0); // overscan_info_present_flag
    if (r.u(1)) {
      r.u(3);
      fullRange = r.u(1);
      if (r.u(1)) {
        r.u(16);
        matrix = r.u(8);
      }
    }
  }
  return { profile, constraints, level, log2MaxFrameNum, widthMbs, heightMbs, width: widthMbs * 16 - 2 * (crop[0] + crop[1]), height: heightMbs * 16 - 2 * (crop[2] + crop[3]), matrix, fullRange };
}

interface Pps {
  deblockingControl: number;
}

function parsePps(rbsp: Uint8Array): Pps {
  const r = new BitReader(rbsp);
  expect([r.ue(), r.ue()]).toEqual([0, 0]); // pic_parameter_set_id, seq_parameter_set_id
  expect(r.u(1)).toBe(0); // entropy_coding_mode_flag: CAVLC
  expect(r.u(1)).toBe(0);
  expect(r.ue()).toBe(0); // num_slice_groups_minus1
  r.ue();
  r.ue();
  expect(r.u(3)).toBe(0); // weighted prediction
  r.se();
  r.se();
  r.se();
  const deblockingControl = r.u(1);
  r.u(1);
  expect(r.u(1)).toBe(0); // redundant_pic_cnt_present_flag
  r.trailing();
  return { deblockingControl };
}

interface Picture {
  idrPicId: number;
  /** Coded planes: luma stride widthMbs·16, chroma stride widthMbs·8. */
  y: Uint8Array;
  cb: Uint8Array;
  cr: Uint8Array;
}

/** An IDR slice (7.3.3 header, 7.3.4 data) in which every macroblock must be I_PCM (7.3.5). */
function decodePcmSlice(nal: Uint8Array, sps: Sps, pps: Pps): Picture {
  expect(nal[0] & 0x80).toBe(0); // forbidden_zero_bit
  expect(nal[0] & 0x1f).toBe(5); // IDR slice
  expect(nal[0] >> 5).toBeGreaterThan(0); // nal_ref_idc
  const r = new BitReader(stripEmulationPrevention(nal.subarray(1)));
  expect(r.ue()).toBe(0); // first_mb_in_slice
  expect([2, 7]).toContain(r.ue()); // slice_type I
  expect(r.ue()).toBe(0); // pic_parameter_set_id
  expect(r.u(sps.log2MaxFrameNum)).toBe(0); // frame_num of an IDR picture
  const idrPicId = r.ue();
  r.u(2); // dec_ref_pic_marking: no_output_of_prior_pics_flag, long_term_reference_flag
  r.se(); // slice_qp_delta
  if (pps.deblockingControl && r.ue() !== 1) {
    r.se();
    r.se();
  }
  const stride = sps.widthMbs * 16;
  const y = new Uint8Array(stride * sps.heightMbs * 16);
  const cb = new Uint8Array(y.length / 4);
  const cr = new Uint8Array(y.length / 4);
  for (let mb = 0; mb < sps.widthMbs * sps.heightMbs; mb++) {
    expect(r.ue()).toBe(25); // mb_type I_PCM
    while (!r.aligned) expect(r.u(1)).toBe(0); // pcm_alignment_zero_bit
    const [mx, my] = [mb % sps.widthMbs, Math.floor(mb / sps.widthMbs)];
    const luma = r.bytes(256);
    for (let i = 0; i < 256; i++) y[(my * 16 + (i >> 4)) * stride + mx * 16 + (i & 15)] = luma[i];
    for (const plane of [cb, cr]) {
      const c = r.bytes(64);
      for (let i = 0; i < 64; i++) plane[(my * 8 + (i >> 3)) * (stride / 2) + mx * 8 + (i & 7)] = c[i];
    }
  }
  r.trailing();
  return { idrPicId, y, cb, cr };
}

interface Decoded {
  sps: Sps;
  pictures: Picture[];
  width: number;
  height: number;
  timescale: number;
  deltas: number[];
}

/** Reads an MP4 of this writer's shape: avcC parameter sets, then each sample through stsz / stco (or co64). */
function decodeMp4(buf: Uint8Array): Decoded {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const top = walk(buf, 0, buf.length);
  expect([...top.keys()]).toEqual(expect.arrayContaining(['ftyp', 'mdat', 'moov']));
  expect(Buffer.from(buf.subarray(8, 12)).toString('latin1')).toBe('isom');
  const stbl = ['moov', 'trak', 'mdia', 'minf', 'stbl'];
  const avc1 = descend(buf, ...stbl, 'stsd', 'avc1');
  const avcC = descend(buf, ...stbl, 'stsd', 'avc1', 'avcC');
  expect(buf[avcC.start]).toBe(1); // configurationVersion
  expect(buf[avcC.start + 4] & 3).toBe(3); // lengthSizeMinusOne
  expect(buf[avcC.start + 5] & 0x1f).toBe(1);
  const spsLen = dv.getUint16(avcC.start + 6);
  const spsNal = buf.subarray(avcC.start + 8, avcC.start + 8 + spsLen);
  expect(spsNal[0] & 0x1f).toBe(7);
  expect([buf[avcC.start + 1], buf[avcC.start + 2], buf[avcC.start + 3]]).toEqual([spsNal[1], spsNal[2], spsNal[3]]);
  const ppsAt = avcC.start + 8 + spsLen;
  expect(buf[ppsAt]).toBe(1);
  const ppsNal = buf.subarray(ppsAt + 3, ppsAt + 3 + dv.getUint16(ppsAt + 1));
  expect(ppsNal[0] & 0x1f).toBe(8);
  const spsRbsp = stripEmulationPrevention(spsNal.subarray(1));
  const sps = parseSps(spsRbsp);
  const pps = parsePps(stripEmulationPrevention(ppsNal.subarray(1)));
  const stblRange = descend(buf, ...stbl);
  const boxesOfStbl = walk(buf, stblRange.start, stblRange.end);
  const stsz = boxesOfStbl.get('stsz')!;
  const stco = boxesOfStbl.get('stco') ?? boxesOfStbl.get('co64')!;
  const wide = boxesOfStbl.has('co64');
  const stts = boxesOfStbl.get('stts')!;
  expect(boxesOfStbl.has('stss')).toBe(false); // every sample is a sync sample
  const stsc = boxesOfStbl.get('stsc')!;
  expect([dv.getUint32(stsc.start + 4), dv.getUint32(stsc.start + 8), dv.getUint32(stsc.start + 12)]).toEqual([1, 1, 1]); // one sample a chunk
  const count = dv.getUint32(stsz.start + 8);
  expect(dv.getUint32(stco.start + 4)).toBe(count);
  const mdat = top.get('mdat')!;
  const pictures: Picture[] = [];
  for (let i = 0; i < count; i++) {
    const size = dv.getUint32(stsz.start + 12 + 4 * i);
    const offset = wide ? Number(dv.getBigUint64(stco.start + 8 + 8 * i)) : dv.getUint32(stco.start + 8 + 4 * i);
    expect(offset).toBeGreaterThanOrEqual(mdat.start);
    expect(offset + size).toBeLessThanOrEqual(mdat.end);
    const nalLen = dv.getUint32(offset);
    expect(nalLen + 4).toBe(size);
    pictures.push(decodePcmSlice(buf.subarray(offset + 4, offset + 4 + nalLen), sps, pps));
  }
  const deltas: number[] = [];
  for (let e = 0; e < dv.getUint32(stts.start + 4); e++) for (let k = 0; k < dv.getUint32(stts.start + 8 + 8 * e); k++) deltas.push(dv.getUint32(stts.start + 12 + 8 * e));
  const mdhd = descend(buf, 'moov', 'trak', 'mdia', 'mdhd');
  return { sps, pictures, width: dv.getUint16(avc1.start + 24), height: dv.getUint16(avc1.start + 26), timescale: dv.getUint32(mdhd.start + 12), deltas };
}

/**
 * Y′CbCr 4:2:0 of one rgb24 frame by BT.601 (Kr = 0.299, Kb = 0.114) in limited range, chroma from the
 * mean of 2 × 2 pixels, odd sides padded with black: the reference the decoded samples must match.
 */
function referenceYuv(rgb: Uint8Array, W: number, H: number): { y: number[]; cb: number[]; cr: number[]; w: number; h: number } {
  const [Kr, Kb] = [0.299, 0.114];
  const w = W + (W % 2);
  const h = H + (H % 2);
  const px = (x: number, yy: number): [number, number, number] => (x < W && yy < H ? [rgb[(yy * W + x) * 3], rgb[(yy * W + x) * 3 + 1], rgb[(yy * W + x) * 3 + 2]] : [0, 0, 0]);
  const luma = ([r, g, b]: number[]) => Kr * r + (1 - Kr - Kb) * g + Kb * b;
  const y: number[] = [];
  for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) y.push(16 + (219 / 255) * luma(px(i, j)));
  const cb: number[] = [];
  const cr: number[] = [];
  for (let j = 0; j < h / 2; j++) {
    for (let i = 0; i < w / 2; i++) {
      const quad = [px(2 * i, 2 * j), px(2 * i + 1, 2 * j), px(2 * i, 2 * j + 1), px(2 * i + 1, 2 * j + 1)];
      const mean = [0, 1, 2].map((c) => quad.reduce((s, p) => s + p[c], 0) / 4);
      const Y = luma(mean);
      cb.push(128 + (224 / 255) * ((mean[2] - Y) / (2 * (1 - Kb))));
      cr.push(128 + (224 / 255) * ((mean[0] - Y) / (2 * (1 - Kr))));
    }
  }
  return { y, cb, cr, w, h };
}

/** Largest |decoded − reference| over the shown area of a picture. */
function maxError(p: Picture, sps: Sps, ref: ReturnType<typeof referenceYuv>): number {
  let max = 0;
  const stride = sps.widthMbs * 16;
  for (let j = 0; j < ref.h; j++) for (let i = 0; i < ref.w; i++) max = Math.max(max, Math.abs(p.y[j * stride + i] - ref.y[j * ref.w + i]));
  for (let j = 0; j < ref.h / 2; j++) {
    for (let i = 0; i < ref.w / 2; i++) {
      max = Math.max(max, Math.abs(p.cb[j * (stride / 2) + i] - ref.cb[j * (ref.w / 2) + i]), Math.abs(p.cr[j * (stride / 2) + i] - ref.cr[j * (ref.w / 2) + i]));
    }
  }
  return max;
}

/** The shown area of a picture as planar yuv420p bytes (what ffmpeg's -pix_fmt yuv420p writes). */
function shownYuv420p(p: Picture, sps: Sps): Uint8Array {
  const stride = sps.widthMbs * 16;
  const out: number[] = [];
  for (let j = 0; j < sps.height; j++) out.push(...p.y.subarray(j * stride, j * stride + sps.width));
  for (const plane of [p.cb, p.cr]) for (let j = 0; j < sps.height / 2; j++) out.push(...plane.subarray((j * stride) / 2, (j * stride) / 2 + sps.width / 2));
  return Uint8Array.from(out);
}

describe('H.264 bitstream pieces', () => {
  it('Exp-Golomb ue(v) / se(v) and fixed-width fields give the hand-computed bits', () => {
    // ue 0, 1, 2, 3 = 1 010 011 00100; trailing bits 1000 → 1010 0110 0100 1000.
    expect(hex(new BitWriter().ue(0).ue(1).ue(2).ue(3).trailingBits().bytes())).toBe('a648');
    // ue(25) (mb_type I_PCM) = 0000 11010, then pcm_alignment_zero_bits.
    expect(hex(new BitWriter().ue(25).alignZero().bytes())).toBe('0d00');
    // se 1, −1, 2, −2, 0 = 010 011 00100 00101 1 → 0100 1100 1000 0101 1 + trailing 1000 000.
    expect(hex(new BitWriter().se(1).se(-1).se(2).se(-2).se(0).trailingBits().bytes())).toBe('4c85c0');
    // u(8) 66, u(3) 5, ue(254) = 0000000 11111111 → 0100 0010 | 101 00000 | 0011 1111 | 11 + trailing 100000.
    expect(hex(new BitWriter().u(8, 66).u(3, 5).ue(254).trailingBits().bytes())).toBe('42a03fe0');
    expect(hex(new BitWriter().u(32, 0xdeadbeef).bytes())).toBe('deadbeef');
    expect(() => new BitWriter().u(1, 1).bytes()).toThrow(VideoEncoderError);
    expect(() => new BitWriter().ue(-1)).toThrow(VideoEncoderError);
  });

  it('emulation prevention inserts 0x03 after 00 00 before 00–03, and after a final zero byte', () => {
    const ep = (bytes: number[]) => hex(addEmulationPrevention(Uint8Array.from(bytes)));
    expect(ep([0, 0, 0])).toBe('0000030003');
    expect(ep([0, 0, 1])).toBe('00000301');
    expect(ep([0, 0, 2, 0, 0, 3])).toBe('0000030200000303');
    expect(ep([0, 0, 4, 0, 0])).toBe('0000040000' + '03');
    expect(ep([0, 0, 0, 0, 0, 0])).toBe('000003000003000003');
    expect(ep([1, 0, 0x80, 0, 0, 0x10])).toBe('0100800000' + '10');
    expect(ep([])).toBe('');
  });

  it('levels and timescales', () => {
    const frameBytes = (mbs: number) => 36 + mbs * 386;
    expect(h264Level(2, 2, 16, frameBytes(4))).toBe(10);
    expect(h264Level(52, 30, 16, frameBytes(1560))).toBe(50);
    expect(h264Level(120, 68, 30, frameBytes(8160))).toBe(51);
    expect(mp4Timing(16)).toEqual({ timescale: 16384, delta: 1024 });
    expect(mp4Timing(30000 / 1001)).toEqual({ timescale: 30000, delta: 1001 });
    expect(mp4Timing(12.5)).toEqual({ timescale: 12800, delta: 1024 });
  });
});

describe('built-in MP4 writer (H.264 I_PCM)', () => {
  for (const [W, H, F] of [
    [32, 32, 1],
    [48, 40, 17],
    [33, 17, 3],
  ] as const) {
    it(`${W}×${H}, ${F} frame(s): an independent parser recovers the BT.601 samples within ±1`, () => {
      const frames = noise(F, H, W, W + H + F);
      const file = encodeMp4Pcm(frames, W, H, { fps: 16, tags: { title: 'a cat', comment: '{"seed":1}' } });
      const d = decodeMp4(file);
      const [w, h] = [W + (W % 2), H + (H % 2)];
      expect([d.width, d.height, d.sps.width, d.sps.height]).toEqual([w, h, w, h]);
      expect([d.sps.widthMbs, d.sps.heightMbs]).toEqual([Math.ceil(w / 16), Math.ceil(h / 16)]);
      expect(d.sps.profile).toBe(66);
      expect(d.sps.constraints & 0x40).toBe(0x40); // constraint_set1_flag: Constrained Baseline
      expect([d.sps.matrix, d.sps.fullRange]).toEqual([6, 0]);
      expect(d.pictures).toHaveLength(F);
      expect(d.deltas.every((x) => x === d.deltas[0])).toBe(true);
      expect(d.timescale / d.deltas[0]).toBe(16);
      d.pictures.forEach((p, i) => {
        if (i) expect(p.idrPicId).not.toBe(d.pictures[i - 1].idrPicId);
        expect(maxError(p, d.sps, referenceYuv(frames[i], W, H))).toBeLessThanOrEqual(1);
      });
    });
  }

  it('the coded area beyond the shown size repeats the last column and row', () => {
    const [W, H] = [20, 18];
    const [frame] = noise(1, H, W, 5);
    const d = decodeMp4(encodeMp4Pcm([frame], W, H, { fps: 8 }));
    const p = d.pictures[0];
    const stride = d.sps.widthMbs * 16;
    for (let j = 0; j < 32; j++) for (let i = W; i < 32; i++) expect(p.y[j * stride + i]).toBe(p.y[Math.min(j, H - 1) * stride + W - 1]);
    for (let i = 0; i < 32; i++) expect(p.y[31 * stride + i]).toBe(p.y[(H - 1) * stride + Math.min(i, W - 1)]);
  });

  it('parseMp4File reads size, frame count, fps, codec and tags back', () => {
    const [W, H, F] = [48, 40, 17];
    const file = path.join(dir, 'probe.mp4');
    fs.writeFileSync(file, encodeMp4Pcm(noise(F, H, W), W, H, { fps: 16, tags: { title: 'a red fox', comment: '{"seed":"42"}' } }));
    const info = parseMp4File(file);
    expect(info).toMatchObject({ frameCount: F, width: W, height: H, codec: 'avc1' });
    expect(info.fps).toBeCloseTo(16, 9);
    expect(info.durationS).toBeCloseTo(F / 16, 9);
    expect(info.tags).toMatchObject({ title: 'a red fox', comment: '{"seed":"42"}', encoder: ENCODER_NAME });
  });

  it('rejects frames of the wrong length, no frames and bad sizes with VideoEncoderError', () => {
    expect(() => encodeMp4Pcm([new Uint8Array(10)], 4, 4, { fps: 8 })).toThrow(/expected 4×4×3 = 48/);
    expect(() => encodeMp4Pcm([], 4, 4, { fps: 8 })).toThrow(VideoEncoderError);
    expect(() => encodeMp4Pcm([], 0, 4, { fps: 8 })).toThrow(VideoEncoderError);
    expect(() => encodeMp4Pcm([], 4, 4, { fps: 0 })).toThrow(VideoEncoderError);
  });

  it.runIf(FFMPEG)('ffmpeg decodes exactly the PCM samples (yuv420p), and ffprobe reads the stream', async () => {
    for (const [W, H, F] of [
      [32, 32, 1],
      [48, 40, 17],
      [33, 17, 2],
    ] as const) {
      const file = path.join(dir, `ffmpeg-${W}x${H}.mp4`);
      const bytes = encodeMp4Pcm(noise(F, H, W, 7), W, H, { fps: 16 });
      fs.writeFileSync(file, bytes);
      const d = decodeMp4(bytes);
      const out = new Uint8Array(execFileSync(FFMPEG!, ['-v', 'error', '-xerror', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'yuv420p', 'pipe:1'], { maxBuffer: 1 << 26 }));
      const expected = Buffer.concat(d.pictures.map((p) => shownYuv420p(p, d.sps)));
      expect(out.length).toBe(expected.length);
      expect(Buffer.from(out).equals(expected)).toBe(true);
      if (FFPROBE) {
        const p = await probeMp4(file);
        expect([p.codec, p.width, p.height, p.frameCount]).toEqual(['h264', d.width, d.height, F]);
        expect(p.fps).toBeCloseTo(16, 3);
      }
    }
  });

  it.runIf(FFMPEG)('ffmpeg decodes to rgb24 within ±3 of the input (limited-range round trip)', () => {
    // A solid colour per frame plus a grey ramp: chroma is constant within a frame (Cb and Cr ignore
    // grey), so 4:2:0 subsampling loses nothing and only quantisation remains.
    const [W, H, F] = [48, 40, 3];
    const r = rng(3);
    const frames = Array.from({ length: F }, () => {
      const base = [0, 1, 2].map(() => 30 + Math.floor(r() * 120));
      const rgb = new Uint8Array(H * W * 3);
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) rgb[(y * W + x) * 3 + c] = base[c] + ((x * 2 + y) % 100);
      return rgb;
    });
    const file = path.join(dir, 'rgb.mp4');
    fs.writeFileSync(file, encodeMp4Pcm(frames, W, H, { fps: 10 }));
    const out = new Uint8Array(execFileSync(FFMPEG!, ['-v', 'error', '-xerror', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { maxBuffer: 1 << 26 }));
    const input = Buffer.concat(frames);
    expect(out.length).toBe(input.length);
    let max = 0;
    for (let i = 0; i < out.length; i++) max = Math.max(max, Math.abs(out[i] - input[i]));
    expect(max).toBeLessThanOrEqual(3);
  });
});
