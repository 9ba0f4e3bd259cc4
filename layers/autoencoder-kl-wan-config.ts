import { defineConfig, field, type ConfigOf } from '../src/config/config-schema.js';
import { boolean, finiteNumber, listOf, nullable, positiveInt, positiveNumber } from '../src/config/value-types.js';

const WAN21_LATENTS_MEAN = [
  -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
];
const WAN21_LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916];

/** The VAE settings: Diffusers' AutoencoderKLWan config, defaults as Diffusers' (= Wan2.1_VAE). */
const FIELDS = {
  baseDim: field('base_dim', positiveInt, 96),
  /** Decoder base width; null = baseDim. */
  decoderBaseDim: field('decoder_base_dim', nullable(positiveInt), null),
  zDim: field('z_dim', positiveInt, 16),
  dimMult: field('dim_mult', listOf(positiveInt, 'positive integers', { nonEmpty: true }), [1, 2, 4, 4]),
  numResBlocks: field('num_res_blocks', positiveInt, 2),
  attnScales: field('attn_scales', listOf(positiveNumber, 'positive numbers'), []),
  /** Per downsampling level, whether it halves time too (Diffusers' spelling). */
  temperalDownsample: field('temperal_downsample', listOf(boolean, 'booleans'), [false, true, true]),
  /** A probability; inference ignores it (0 in every Wan VAE). */
  dropout: field('dropout', finiteNumber({ min: 0, max: 1 }), 0),
  latentsMean: field('latents_mean', listOf(finiteNumber(), 'numbers'), WAN21_LATENTS_MEAN),
  /** Per-channel standard deviations (divisors): positive. */
  latentsStd: field('latents_std', listOf(positiveNumber, 'positive numbers'), WAN21_LATENTS_STD),
  /** Wan2.2 layout: residual down/up blocks with AvgDown3D / DupUp3D shortcuts. */
  isResidual: field('is_residual', boolean, false),
  /** Encoder input channels: video channels × patchSize² (3 for Wan2.1, 12 for Wan2.2). */
  inChannels: field('in_channels', positiveInt, 3),
  /** Decoder output channels, before unpatchify. */
  outChannels: field('out_channels', positiveInt, 3),
  /** Spatial patchify factor applied to the video before the encoder (2 for Wan2.2), or null. */
  patchSize: field('patch_size', nullable(positiveInt), null),
  scaleFactorTemporal: field('scale_factor_temporal', positiveInt, 4),
  scaleFactorSpatial: field('scale_factor_spatial', positiveInt, 8),
};

/** The VAE hyper-parameters: Diffusers' AutoencoderKLWan config fields in camelCase. */
export type AutoencoderKLWanConfig = ConfigOf<typeof FIELDS>;

export type AutoencoderKLWanPreset = 'wan2.1' | 'wan2.2';

/**
 * Builds, reads and checks AutoencoderKLWanConfig objects. Presets: 'wan2.1' (Wan2.1_VAE, used by
 * Wan2.1 and Wan2.2-A14B; Diffusers' defaults) and 'wan2.2' (Wan2.2_VAE of TI2V-5B;
 * `vae22_diffusers_config` of Diffusers' conversion script).
 */
export const AutoencoderKLWanConfig = defineConfig<typeof FIELDS, AutoencoderKLWanPreset>(FIELDS, {
  what: 'a Wan VAE',
  dialects: [{ name: 'AutoencoderKLWan' }],
  check: (c, name) => {
    const levels = c.dimMult.length - 1;
    if (c.temperalDownsample.length !== levels) {
      return `${name('temperalDownsample')} must hold ${levels} booleans (one per downsampling level of ${name('dimMult')}), got ${c.temperalDownsample.length}`;
    }
    if (c.isResidual && c.attnScales.length > 0) return `${name('attnScales')} must be empty when ${name('isResidual')} is true (the Wan2.2 layout has no level attention)`;
    if (c.latentsMean.length !== c.zDim) return `${name('latentsMean')} must hold ${name('zDim')} = ${c.zDim} numbers, got ${c.latentsMean.length}`;
    if (c.latentsStd.length !== c.zDim) return `${name('latentsStd')} must hold ${name('zDim')} = ${c.zDim} numbers, got ${c.latentsStd.length}`;
    const p = c.patchSize ?? 1;
    if (c.inChannels % (p * p) !== 0 || c.outChannels % (p * p) !== 0) {
      return `${name('inChannels')} (${c.inChannels}) and ${name('outChannels')} (${c.outChannels}) must be multiples of ${name('patchSize')}² = ${p * p}`;
    }
    return undefined;
  },
  presets: (defaults) => ({
    'wan2.1': { ...defaults },
    'wan2.2': {
      ...defaults,
      baseDim: 160,
      decoderBaseDim: 256,
      zDim: 48,
      latentsMean: [
        -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891, 0.157, -0.0098, 0.0375, -0.1825,
        -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.123,
        -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.052, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
      ],
      latentsStd: [
        0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.499, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978, 0.5759,
        0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065,
        0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.06, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
      ],
      isResidual: true,
      inChannels: 12,
      outChannels: 12,
      patchSize: 2,
      scaleFactorSpatial: 16,
    },
  }),
});

/** The published VAEs by preset name (see AutoencoderKLWanConfig). */
export const WAN_VAE_PRESETS = AutoencoderKLWanConfig.presets;
