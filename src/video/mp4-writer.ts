// Hand-written: npm's MP4 muxers (mp4-muxer, mp4box) take an already-encoded stream, and Node has no H.264 encoder without ffmpeg; I_PCM needs none.
/**
 * A pure-TypeScript MP4 writer, the fallback for saveVideo when there is no ffmpeg: an H.264
 * Constrained Baseline stream in which every macroblock is I_PCM (raw 8-bit 4:2:0 samples, so no
 * transform or entropy coding), in an ISO base media file. Files are large (≈ 1.5 bytes a pixel a
 * frame) but play anywhere H.264 does.
 *
 * References (ITU-T H.264 (08/2021); ISO/IEC 14496-12:2015; ISO/IEC 14496-15:2017):
 * - H.264 7.3.1 / 7.4.1 NAL unit syntax and emulation prevention (0x03 after 0x0000 before 0x00–0x03);
 * - H.264 7.3.2.1.1 seq_parameter_set_data, E.1.1 vui_parameters, 7.3.2.2 pic_parameter_set_rbsp;
 * - H.264 7.3.3 slice_header, 7.3.4 slice_data, 7.3.5 macroblock_layer: mb_type 25 is I_PCM in an
 *   I slice (Table 7-11), then pcm_alignment_zero_bit up to a byte boundary, 256 luma and 2 × 64
 *   chroma samples in raster order within the macroblock (8.3.5);
 * - H.264 9.1 Exp-Golomb codes ue(v) / se(v); A.3.1 and Table A-1 level limits;
 * - ISO/IEC 14496-12 boxes ftyp, mdat, moov, mvhd, trak, tkhd, mdia, mdhd, hdlr, minf, vmhd, dinf,
 *   dref, stbl, stsd, stts, stsc, stsz, stco / co64, udta; ISO/IEC 14496-15 5.3.3 avc1 and
 *   AVCDecoderConfigurationRecord (avcC).
 */
import { concatBytes } from './bytes.js';
import { VideoEncoderError } from './video-error.js';

/** Writes bits MSB first: fixed-width fields and the Exp-Golomb codes of H.264 9.1. */
export class BitWriter {
  private buf = new Uint8Array(64);
  private bytePos = 0;
  private cur = 0;
  private nbits = 0;

  /** `n` (0–32) bits of `value`, most significant first (u(n) of 7.2). */
  u(n: number, value: number): this {
    for (let i = n - 1; i >= 0; i--) this.bit(Math.floor(value / 2 ** i) & 1);
    return this;
  }

  /** Unsigned Exp-Golomb ue(v) (9.1): ⌊log2(v + 1)⌋ zero bits, then v + 1 in binary. */
  ue(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xfffffffe) throw new VideoEncoderError(`H.264 ue(v): got ${value}, expected an integer in 0 … 2^32 − 2`);
    const len = Math.floor(Math.log2(value + 1)) + 1;
    return this.u(len - 1, 0).u(len, value + 1);
  }

  /** Signed Exp-Golomb se(v) (9.1.1): k > 0 → 2k − 1, k ≤ 0 → −2k. */
  se(value: number): this {
    return this.ue(value > 0 ? 2 * value - 1 : -2 * value);
  }

  /** Zero bits up to the next byte boundary (pcm_alignment_zero_bit, 7.3.5). */
  alignZero(): this {
    while (this.nbits !== 0) this.bit(0);
    return this;
  }

  /** rbsp_trailing_bits (7.3.2.11): a one bit, then zero bits to a byte boundary. */
  trailingBits(): this {
    return this.bit(1).alignZero();
  }

  /** The bytes written; the writer must be at a byte boundary. */
  bytes(): Uint8Array {
    if (this.nbits !== 0) throw new VideoEncoderError('BitWriter: not at a byte boundary');
    return this.buf.slice(0, this.bytePos);
  }

  private bit(b: number): this {
    this.cur = (this.cur << 1) | b;
    if (++this.nbits === 8) {
      if (this.bytePos === this.buf.length) {
        const bigger = new Uint8Array(this.buf.length * 2);
        bigger.set(this.buf);
        this.buf = bigger;
      }
      this.buf[this.bytePos++] = this.cur;
      this.cur = 0;
      this.nbits = 0;
    }
    return this;
  }
}

/**
 * RBSP → NAL unit payload (7.4.1): an emulation_prevention_three_byte 0x03 is inserted after every
 * two zero bytes that precede a byte ≤ 0x03, and appended when the RBSP ends in a zero byte, so that
 * no start code prefix (0x000001) can appear inside the NAL unit.
 */
export function addEmulationPrevention(rbsp: Uint8Array): Uint8Array {
  let extra = 0;
  let zeros = 0;
  for (let i = 0; i < rbsp.length; i++) {
    const b = rbsp[i];
    if (zeros >= 2 && b <= 3) {
      extra++;
      zeros = 0;
    }
    zeros = b === 0 ? zeros + 1 : 0;
  }
  const trailing = rbsp.length > 0 && rbsp[rbsp.length - 1] === 0 ? 1 : 0;
  if (extra === 0 && trailing === 0) return rbsp.slice();
  const out = new Uint8Array(rbsp.length + extra + trailing);
  let o = 0;
  zeros = 0;
  for (let i = 0; i < rbsp.length; i++) {
    const b = rbsp[i];
    if (zeros >= 2 && b <= 3) {
      out[o++] = 3;
      zeros = 0;
    }
    out[o++] = b;
    zeros = b === 0 ? zeros + 1 : 0;
  }
  if (trailing) out[o] = 3;
  return out;
}

/** nal_unit_type values (Table 7-1). */
const NAL_IDR_SLICE = 5;
const NAL_SPS = 7;
const NAL_PPS = 8;

/** A NAL unit (7.3.1): forbidden_zero_bit 0, nal_ref_idc, nal_unit_type, then the escaped RBSP. */
function nalUnit(refIdc: number, type: number, rbsp: Uint8Array): Uint8Array {
  return concatBytes([Uint8Array.of((refIdc << 5) | type), addEmulationPrevention(rbsp)]);
}

/** mb_type of I_PCM in an I slice (Table 7-11). */
const MB_TYPE_I_PCM = 25;

/** Bytes of one I_PCM macroblock in 4:2:0: 16 × 16 luma + 2 × 8 × 8 chroma (7.3.5). */
const PCM_BYTES = 384;

/** log2_max_frame_num_minus4 (7.4.2.1.1): frame_num is 4 bits (always 0 here, every picture is an IDR). */
const LOG2_MAX_FRAME_NUM_MINUS4 = 0;

/** Table A-1 rows: level_idc, MaxMBPS, MaxFS, MaxBR (1000 bit/s), MaxCPB (1000 bit), MinCR. */
const LEVELS: ReadonlyArray<readonly [number, number, number, number, number, number]> = [
  [10, 1485, 99, 64, 175, 2],
  [11, 3000, 396, 192, 500, 2],
  [12, 6000, 396, 384, 1000, 2],
  [13, 11880, 396, 768, 2000, 2],
  [20, 11880, 396, 2000, 2000, 2],
  [21, 19800, 792, 4000, 4000, 2],
  [22, 20250, 1620, 4000, 4000, 2],
  [30, 40500, 1620, 10000, 10000, 2],
  [31, 108000, 3600, 14000, 14000, 4],
  [32, 216000, 5120, 20000, 20000, 4],
  [40, 245760, 8192, 20000, 25000, 4],
  [41, 245760, 8192, 50000, 62500, 2],
  [42, 522240, 8704, 50000, 62500, 2],
  [50, 589824, 22080, 135000, 135000, 2],
  [51, 983040, 36864, 240000, 240000, 2],
];

/** cpbBrNalFactor of the Baseline profile (Table A-2): bit rates and CPB sizes in bits are 1200 × MaxBR / MaxCPB. */
const CPB_BR_NAL_FACTOR = 1200;

/**
 * The smallest level_idc whose limits (A.3.1, Table A-1) a stream of `widthMbs` × `heightMbs`
 * macroblocks, `frameBytes` bytes a picture and `fps` pictures a second meets: frame size and sides,
 * macroblock rate, the MinCR bound on each access unit (the first one, with fR = 1/172, included), bit
 * rate and CPB size. Uncompressed pictures outgrow these limits quickly (a 1280 × 720 stream at 30 fps
 * passes 5.1's bit rate); such a stream still declares 5.1, which software decoders accept.
 */
export function h264Level(widthMbs: number, heightMbs: number, fps: number, frameBytes: number): number {
  const frameMbs = widthMbs * heightMbs;
  for (const [level, maxMbps, maxFs, maxBr, maxCpb, minCr] of LEVELS) {
    const fits =
      frameMbs <= maxFs &&
      widthMbs * widthMbs <= 8 * maxFs &&
      heightMbs * heightMbs <= 8 * maxFs &&
      frameMbs * fps <= maxMbps &&
      frameBytes * fps * minCr <= PCM_BYTES * maxMbps &&
      frameBytes * minCr <= PCM_BYTES * Math.max(frameMbs, maxMbps / 172) &&
      frameBytes * 8 * fps <= CPB_BR_NAL_FACTOR * 1000 * maxBr &&
      frameBytes * 8 <= CPB_BR_NAL_FACTOR * 1000 * maxCpb;
    if (fits) return level;
  }
  return 51;
}

/** The coded picture: macroblocks across and down, and the frame cropping that leaves the shown size (7.4.2.1.1). */
interface Geometry {
  /** Shown size: the input size, odd sides padded to even (4:2:0 crops in units of 2). */
  width: number;
  height: number;
  widthMbs: number;
  heightMbs: number;
}

/** seq_parameter_set_rbsp (7.3.2.1.1) with vui_parameters (E.1.1). */
function spsRbsp(g: Geometry, level: number): Uint8Array {
  const w = new BitWriter();
  w.u(8, 66); // profile_idc: Baseline
  w.u(1, 1).u(1, 1).u(1, 0).u(1, 0).u(1, 0).u(1, 0).u(2, 0); // constraint_set0/1 (Constrained Baseline, A.2.1.1), set2–5, reserved_zero_2bits
  w.u(8, level);
  w.ue(0); // seq_parameter_set_id
  w.ue(LOG2_MAX_FRAME_NUM_MINUS4);
  w.ue(2); // pic_order_cnt_type 2: output order = decoding order
  w.ue(1); // max_num_ref_frames
  w.u(1, 0); // gaps_in_frame_num_value_allowed_flag
  w.ue(g.widthMbs - 1); // pic_width_in_mbs_minus1
  w.ue(g.heightMbs - 1); // pic_height_in_map_units_minus1
  w.u(1, 1); // frame_mbs_only_flag
  w.u(1, 1); // direct_8x8_inference_flag
  const cropRight = (g.widthMbs * 16 - g.width) / 2;
  const cropBottom = (g.heightMbs * 16 - g.height) / 2;
  // CropUnitX = CropUnitY = 2 for 4:2:0 with frame_mbs_only_flag 1 (7-19, 7-20).
  if (cropRight || cropBottom) w.u(1, 1).ue(0).ue(cropRight).ue(0).ue(cropBottom);
  else w.u(1, 0);
  w.u(1, 1); // vui_parameters_present_flag
  w.u(1, 0); // aspect_ratio_info_present_flag
  w.u(1, 0); // overscan_info_present_flag
  w.u(1, 1); // video_signal_type_present_flag
  w.u(3, 5); // video_format: unspecified
  w.u(1, 0); // video_full_range_flag: limited range (Y 16–235, Cb/Cr 16–240)
  w.u(1, 1); // colour_description_present_flag
  w.u(8, 2).u(8, 2); // colour_primaries, transfer_characteristics: unspecified (Table E-3, E-4)
  w.u(8, 6); // matrix_coefficients 6: BT.601 (Table E-5), the matrix the samples were made with
  w.u(1, 0); // chroma_loc_info_present_flag
  w.u(1, 0); // timing_info_present_flag: the container has the timing
  w.u(1, 0).u(1, 0); // nal_hrd_parameters_present_flag, vcl_hrd_parameters_present_flag
  w.u(1, 0); // pic_struct_present_flag
  w.u(1, 1); // bitstream_restriction_flag
  w.u(1, 1); // motion_vectors_over_pic_boundaries_flag
  w.ue(0).ue(0); // max_bytes_per_pic_denom, max_bits_per_mb_denom: no limit
  w.ue(15).ue(15); // log2_max_mv_length_horizontal / _vertical (their inferred values)
  w.ue(0); // max_num_reorder_frames: each picture is output when decoded
  w.ue(1); // max_dec_frame_buffering
  return w.trailingBits().bytes();
}

/** pic_parameter_set_rbsp (7.3.2.2): CAVLC, one slice group, deblocking control in the slice header. */
function ppsRbsp(): Uint8Array {
  const w = new BitWriter();
  w.ue(0); // pic_parameter_set_id
  w.ue(0); // seq_parameter_set_id
  w.u(1, 0); // entropy_coding_mode_flag: CAVLC
  w.u(1, 0); // bottom_field_pic_order_in_frame_present_flag
  w.ue(0); // num_slice_groups_minus1
  w.ue(0).ue(0); // num_ref_idx_l0/l1_default_active_minus1
  w.u(1, 0).u(2, 0); // weighted_pred_flag, weighted_bipred_idc
  w.se(0).se(0).se(0); // pic_init_qp_minus26, pic_init_qs_minus26, chroma_qp_index_offset
  w.u(1, 1); // deblocking_filter_control_present_flag
  w.u(1, 0); // constrained_intra_pred_flag
  w.u(1, 0); // redundant_pic_cnt_present_flag
  return w.trailingBits().bytes();
}

/**
 * The start of an IDR slice RBSP up to the first macroblock's samples: slice_header (7.3.3), then
 * mb_type I_PCM and pcm_alignment_zero_bit (7.3.5).
 */
function sliceHeaderBits(idrPicId: number): Uint8Array {
  const w = new BitWriter();
  w.ue(0); // first_mb_in_slice
  w.ue(7); // slice_type 7: I, and every slice of the picture is I
  w.ue(0); // pic_parameter_set_id
  w.u(LOG2_MAX_FRAME_NUM_MINUS4 + 4, 0); // frame_num: 0 in an IDR picture (7.4.3)
  w.ue(idrPicId); // idr_pic_id: differs between consecutive IDR pictures (7.4.3)
  // pic_order_cnt_type 2: no POC fields; I slice: no reference list fields (7.3.3.1 is empty).
  w.u(1, 0).u(1, 0); // dec_ref_pic_marking (7.3.3.3): no_output_of_prior_pics_flag, long_term_reference_flag
  w.se(0); // slice_qp_delta (unused by I_PCM)
  w.ue(1); // disable_deblocking_filter_idc 1: off (I_PCM samples are final)
  w.ue(MB_TYPE_I_PCM);
  return w.alignZero().bytes();
}

/**
 * Each later macroblock of the slice, from the byte boundary after the previous one's samples:
 * ue(25) = 0000 1101 0, then seven pcm_alignment_zero_bits.
 */
const MB_PREFIX = Uint8Array.of(0x0d, 0x00);

/** Y, Cb and Cr planes of the coded picture (macroblock-aligned). */
interface Planes {
  y: Uint8Array;
  cb: Uint8Array;
  cr: Uint8Array;
  /** Luma samples a row; chroma rows have half. */
  stride: number;
}

/** BT.601 limited range (Rec. ITU-R BT.601-7 2.5.3, with 8-bit quantisation): Y = 16 + 219·E'Y, Cb/Cr = 128 + 224·E'Cb/Cr. */
const KY = [65.481 / 255, 128.553 / 255, 24.966 / 255];
const KCB = [-37.797 / 1020, -74.203 / 1020, 112 / 1020];
const KCR = [112 / 1020, -93.786 / 1020, -18.214 / 1020];

/**
 * rgb24 [height, width, 3] → Y′CbCr 4:2:0 of the coded picture: BT.601 limited range, each chroma
 * sample from the mean of its 2 × 2 pixels (ffmpeg's rgb24 → yuv420p). An odd side gets one black
 * column / row (as ffmpeg's pad filter does in the ffmpeg path); the coded area beyond the shown
 * size repeats the last column / row.
 */
function toPlanes(rgb: Uint8Array, width: number, height: number, geo: Geometry): Planes {
  const stride = geo.widthMbs * 16;
  const rows = geo.heightMbs * 16;
  const y = new Uint8Array(stride * rows);
  const cStride = stride / 2;
  const cb = new Uint8Array(cStride * (rows / 2));
  const cr = new Uint8Array(cStride * (rows / 2));
  const [yr, yg, yb] = KY;
  const [br, bg, bb] = KCB;
  const [rr, rg, rb] = KCR;
  const at = (px: number, py: number): number => (px < width && py < height ? (py * width + px) * 3 : -1);
  for (let cy = 0; cy < geo.height / 2; cy++) {
    for (let cx = 0; cx < geo.width / 2; cx++) {
      let sr = 0;
      let sg = 0;
      let sb = 0;
      for (let k = 0; k < 4; k++) {
        const px = 2 * cx + (k & 1);
        const py = 2 * cy + (k >> 1);
        const i = at(px, py);
        const r = i < 0 ? 0 : rgb[i];
        const g = i < 0 ? 0 : rgb[i + 1];
        const b = i < 0 ? 0 : rgb[i + 2];
        // + 0.5, then the Uint8Array store truncates: rounding to nearest.
        y[py * stride + px] = 16.5 + yr * r + yg * g + yb * b;
        sr += r;
        sg += g;
        sb += b;
      }
      cb[cy * cStride + cx] = 128.5 + br * sr + bg * sg + bb * sb;
      cr[cy * cStride + cx] = 128.5 + rr * sr + rg * sg + rb * sb;
    }
  }
  replicateEdges(y, stride, rows, geo.width, geo.height);
  replicateEdges(cb, cStride, rows / 2, geo.width / 2, geo.height / 2);
  replicateEdges(cr, cStride, rows / 2, geo.width / 2, geo.height / 2);
  return { y, cb, cr, stride };
}

/** Fills a plane beyond its `w` × `h` top-left area with copies of the last column, then the last row. */
function replicateEdges(p: Uint8Array, stride: number, rows: number, w: number, h: number): void {
  if (w < stride) for (let r = 0; r < h; r++) p.fill(p[r * stride + w - 1], r * stride + w, (r + 1) * stride);
  for (let r = h; r < rows; r++) p.copyWithin(r * stride, (h - 1) * stride, h * stride);
}

/** The IDR slice RBSP (7.3.2.8): header, every macroblock as I_PCM in raster order, rbsp_slice_trailing_bits. */
function sliceRbsp(p: Planes, g: Geometry, idrPicId: number): Uint8Array {
  const head = sliceHeaderBits(idrPicId);
  const mbs = g.widthMbs * g.heightMbs;
  const out = new Uint8Array(head.length + mbs * PCM_BYTES + (mbs - 1) * MB_PREFIX.length + 1);
  out.set(head);
  let o = head.length;
  const cStride = p.stride / 2;
  for (let my = 0; my < g.heightMbs; my++) {
    for (let mx = 0; mx < g.widthMbs; mx++) {
      if (my || mx) {
        out.set(MB_PREFIX, o);
        o += MB_PREFIX.length;
      }
      for (let r = 0; r < 16; r++) {
        const s = (my * 16 + r) * p.stride + mx * 16;
        out.set(p.y.subarray(s, s + 16), o);
        o += 16;
      }
      for (const plane of [p.cb, p.cr]) {
        for (let r = 0; r < 8; r++) {
          const s = (my * 8 + r) * cStride + mx * 8;
          out.set(plane.subarray(s, s + 8), o);
          o += 8;
        }
      }
    }
  }
  out[o] = 0x80; // rbsp_stop_one_bit, the slice data ending byte-aligned
  return out;
}

// ---- ISO/IEC 14496-12 boxes ----

const latin1 = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

function u16(v: number): Uint8Array {
  return Uint8Array.of(v >>> 8, v & 0xff);
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v);
  return b;
}

function u64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v));
  return b;
}

/** A box (4.2): 32-bit size, four-character type, payload. */
function box(type: string, ...payload: Uint8Array[]): Uint8Array {
  const body = concatBytes(payload);
  return concatBytes([u32(8 + body.length), latin1(type), body]);
}

/** A full box (4.2): a box whose payload starts with version (8 bits) and flags (24 bits). */
function fullBox(type: string, version: number, flags: number, ...payload: Uint8Array[]): Uint8Array {
  return box(type, u32(version * 2 ** 24 + flags), ...payload);
}

const UNITY_MATRIX = concatBytes([0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000].map(u32));

/** Durations past 32 bits need version 1 of mvhd, tkhd and mdhd (64-bit times). */
const timeVersion = (duration: number): number => (duration > 0xffffffff ? 1 : 0);
const time = (version: number, v: number): Uint8Array => (version ? u64(v) : u32(v));

/** The sample rate as timescale / delta (exact for integer and NTSC-style x/1.001 rates), timescale ≥ 10000 as ffmpeg does. */
export function mp4Timing(fps: number): { timescale: number; delta: number } {
  let timescale = Math.max(1, Math.round(fps * 1000));
  let delta = 1000;
  for (let q = 1; q <= 1001; q++) {
    const p = Math.round(fps * q);
    if (p >= 1 && Math.abs(p - fps * q) <= 1e-9 * p) {
      timescale = p;
      delta = q;
      break;
    }
  }
  while (timescale < 10000) {
    timescale *= 2;
    delta *= 2;
  }
  if (timescale > 0xffffffff) throw new VideoEncoderError(`MP4: a frame rate of ${fps} fps needs a timescale past 32 bits`);
  return { timescale, delta };
}

/** iTunes-style metadata (moov/udta/meta/ilst), as ffmpeg's -metadata title=… comment=… writes it. */
function udta(tags: Mp4Tags): Uint8Array {
  const item = (key: number[], text: string) => box(String.fromCharCode(...key), box('data', u32(1), u32(0), new TextEncoder().encode(text)));
  const items: Uint8Array[] = [];
  if (tags.title !== undefined) items.push(item([0xa9, 0x6e, 0x61, 0x6d], tags.title)); // ©nam
  if (tags.comment !== undefined) items.push(item([0xa9, 0x63, 0x6d, 0x74], tags.comment)); // ©cmt
  items.push(item([0xa9, 0x74, 0x6f, 0x6f], ENCODER_NAME)); // ©too
  const hdlr = fullBox('hdlr', 0, 0, u32(0), latin1('mdir'), latin1('appl'), u32(0), u32(0), Uint8Array.of(0));
  return box('udta', fullBox('meta', 0, 0, hdlr, box('ilst', ...items)));
}

/** What the built-in writer records as the file's encoder (©too). */
export const ENCODER_NAME = 'wan-tfjs built-in MP4 writer (H.264 I_PCM)';

/** Container tags of the built-in writer. */
export interface Mp4Tags {
  title?: string;
  comment?: string;
}

export interface Mp4PcmOptions {
  fps: number;
  tags?: Mp4Tags;
}

/** Largest side the avc1 sample entry can state (16 bits). */
const MAX_SIDE = 0xfff0;

/**
 * Streams frames into an MP4: `header()` first, then `frame(rgb)` for each frame, each result
 * appended to the file; `finish()` gives the moov box to append and the final mdat header to write
 * over the placeholder at `mdatHeaderOffset`. Only one frame is held at a time. Odd sides are padded
 * to even with black (the shown size is `width` × `height`).
 */
export class Mp4PcmWriter {
  /** The shown size: the input's, odd sides + 1. */
  readonly width: number;
  readonly height: number;
  readonly level: number;
  private readonly geometry: Geometry;
  private readonly sps: Uint8Array;
  private readonly pps: Uint8Array;
  private readonly ftyp = box('ftyp', latin1('isom'), u32(0x200), latin1('isom'), latin1('iso2'), latin1('avc1'), latin1('mp41'));
  private readonly sizes: number[] = [];
  private readonly offsets: number[] = [];
  private end: number;

  constructor(
    private readonly inputWidth: number,
    private readonly inputHeight: number,
    private readonly options: Mp4PcmOptions,
  ) {
    if (!(Number.isInteger(inputWidth) && Number.isInteger(inputHeight) && inputWidth >= 1 && inputHeight >= 1 && inputWidth <= MAX_SIDE && inputHeight <= MAX_SIDE)) {
      throw new VideoEncoderError(`MP4: got a ${inputWidth}×${inputHeight} frame, expected sides of 1 … ${MAX_SIDE} pixels`);
    }
    if (!(Number.isFinite(options.fps) && options.fps > 0)) throw new VideoEncoderError(`MP4: fps ${options.fps}, expected a positive number`);
    this.width = inputWidth + (inputWidth % 2);
    this.height = inputHeight + (inputHeight % 2);
    this.geometry = { width: this.width, height: this.height, widthMbs: Math.ceil(this.width / 16), heightMbs: Math.ceil(this.height / 16) };
    const mbs = this.geometry.widthMbs * this.geometry.heightMbs;
    // A sample: 4-byte length, NAL header, slice header (< 32 bytes), the macroblocks.
    this.level = h264Level(this.geometry.widthMbs, this.geometry.heightMbs, options.fps, 4 + 32 + mbs * (PCM_BYTES + MB_PREFIX.length));
    this.sps = nalUnit(3, NAL_SPS, spsRbsp(this.geometry, this.level));
    this.pps = nalUnit(3, NAL_PPS, ppsRbsp());
    this.end = this.ftyp.length + 16;
  }

  /** ftyp, then 16 bytes held for the mdat header (a 'free' box and a 32-bit mdat header, or a 64-bit one). */
  header(): Uint8Array {
    return concatBytes([this.ftyp, new Uint8Array(16)]);
  }

  /** The next frame (rgb24 [height, width, 3]) as an MP4 sample: one IDR picture, a 4-byte length and its NAL unit. */
  frame(rgb: Uint8Array): Uint8Array {
    const expected = this.inputWidth * this.inputHeight * 3;
    if (rgb.length !== expected) throw new VideoEncoderError(`frame ${this.sizes.length} has ${rgb.length} bytes, expected ${this.inputWidth}×${this.inputHeight}×3 = ${expected}`);
    const planes = toPlanes(rgb, this.inputWidth, this.inputHeight, this.geometry);
    const nal = nalUnit(3, NAL_IDR_SLICE, sliceRbsp(planes, this.geometry, this.sizes.length % 2));
    const sample = concatBytes([u32(nal.length), nal]);
    this.offsets.push(this.end);
    this.sizes.push(sample.length);
    this.end += sample.length;
    return sample;
  }

  /** After the last frame: the moov box (to append) and the mdat header (to write at `mdatHeaderOffset`). */
  finish(): { moov: Uint8Array; mdatHeader: Uint8Array; mdatHeaderOffset: number } {
    if (this.sizes.length === 0) throw new VideoEncoderError('MP4: no frames were written');
    const mdatSize = this.end - this.ftyp.length - 8;
    const mdatHeader =
      mdatSize <= 0xffffffff
        ? concatBytes([u32(8), latin1('free'), u32(mdatSize), latin1('mdat')])
        : concatBytes([u32(1), latin1('mdat'), u64(mdatSize + 8)]);
    return { moov: this.moov(), mdatHeader, mdatHeaderOffset: this.ftyp.length };
  }

  private moov(): Uint8Array {
    const { timescale, delta } = mp4Timing(this.options.fps);
    const count = this.sizes.length;
    const duration = count * delta;
    const v = timeVersion(duration);
    const mvhd = fullBox('mvhd', v, 0, time(v, 0), time(v, 0), u32(timescale), time(v, duration), u32(0x00010000), u16(0x0100), new Uint8Array(10), UNITY_MATRIX, new Uint8Array(24), u32(2));
    // flags 3: track_enabled | track_in_movie; width and height are 16.16 fixed point.
    const tkhd = fullBox('tkhd', v, 3, time(v, 0), time(v, 0), u32(1), u32(0), time(v, duration), new Uint8Array(8), u16(0), u16(0), u16(0), u16(0), UNITY_MATRIX, u32(this.width * 0x10000), u32(this.height * 0x10000));
    const language = u16((('u'.charCodeAt(0) - 0x60) << 10) | (('n'.charCodeAt(0) - 0x60) << 5) | ('d'.charCodeAt(0) - 0x60)); // 'und'
    const mdhd = fullBox('mdhd', v, 0, time(v, 0), time(v, 0), u32(timescale), time(v, duration), language, u16(0));
    const hdlr = fullBox('hdlr', 0, 0, u32(0), latin1('vide'), new Uint8Array(12), latin1('VideoHandler\0'));
    const vmhd = fullBox('vmhd', 0, 1, u16(0), new Uint8Array(6));
    const dinf = box('dinf', fullBox('dref', 0, 0, u32(1), fullBox('url ', 0, 1)));
    const stbl = box('stbl', this.stsd(), fullBox('stts', 0, 0, u32(1), u32(count), u32(delta)), fullBox('stsc', 0, 0, u32(1), u32(1), u32(1), u32(1)), fullBox('stsz', 0, 0, u32(0), u32(count), ...this.sizes.map(u32)), this.chunkOffsets());
    const trak = box('trak', tkhd, box('mdia', mdhd, hdlr, box('minf', vmhd, dinf, stbl)));
    return box('moov', mvhd, trak, udta(this.options.tags ?? {}));
  }

  /** One sample a chunk: stco, or co64 when an offset passes 32 bits. Every sample is a sync sample, so there is no stss. */
  private chunkOffsets(): Uint8Array {
    const large = this.offsets[this.offsets.length - 1] > 0xffffffff;
    return fullBox(large ? 'co64' : 'stco', 0, 0, u32(this.offsets.length), ...this.offsets.map(large ? u64 : u32));
  }

  /** stsd with the avc1 visual sample entry (14496-12 12.1.3, 14496-15 5.4.2) and its avcC (5.3.3.1). */
  private stsd(): Uint8Array {
    const name = new Uint8Array(32);
    const label = latin1('H.264 I_PCM');
    name[0] = label.length;
    name.set(label, 1);
    const avcC = box('avcC', Uint8Array.of(1, this.sps[1], this.sps[2], this.sps[3], 0xfc | 3, 0xe0 | 1), u16(this.sps.length), this.sps, Uint8Array.of(1), u16(this.pps.length), this.pps);
    const avc1 = box('avc1', new Uint8Array(6), u16(1), new Uint8Array(16), u16(this.width), u16(this.height), u32(0x00480000), u32(0x00480000), u32(0), u16(1), name, u16(0x0018), u16(0xffff), avcC);
    return fullBox('stsd', 0, 0, u32(1), avc1);
  }
}

/** Frames (rgb24 [height, width, 3] each) → a whole MP4 file in memory; see Mp4PcmWriter. */
export function encodeMp4Pcm(frames: readonly Uint8Array[], width: number, height: number, options: Mp4PcmOptions): Uint8Array {
  const w = new Mp4PcmWriter(width, height, options);
  const parts = [w.header(), ...frames.map((f) => w.frame(f))];
  const { moov, mdatHeader, mdatHeaderOffset } = w.finish();
  const file = concatBytes([...parts, moov]);
  file.set(mdatHeader, mdatHeaderOffset);
  return file;
}
