import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AutoencoderKLWanConfig } from '../layers/autoencoder-kl-wan-config.js';
import { UMT5Config } from '../layers/umt5-config.js';
import { PRESETS, WanTransformerConfig } from '../layers/wan-transformer-config.js';
import { FlowDPMSolverConfig } from '../schedulers/flow-dpmsolver.js';
import { FlowMatchEulerConfig } from '../schedulers/flow-match-euler.js';
import { FlowUniPCConfig, defaultFlowUniPCConfig } from '../schedulers/flow-unipc.js';
import type { ConfigJson, ConfigSchema, Fields } from '../src/config/config-schema.js';
import { parsePythonJson } from '../src/config/python-json.js';
import { ConfigError } from '../src/errors.js';
import { fixtureDir } from './helpers/fixtures.js';

const json = (...parts: string[]): ConfigJson => parsePythonJson(fs.readFileSync(path.join(...parts), 'utf-8')) as ConfigJson;

/** Each schema with configs it must read back equal: defaults, presets, fixtures' config.json. */
const SCHEMAS: Array<[string, ConfigSchema<Fields, string>, ConfigJson[]]> = [
  ['WanTransformer3DModel', WanTransformerConfig, [json(fixtureDir('pipeline-a14b'), 'transformer', 'config.json'), json(fixtureDir('wan-transformer-ti2v'), 'original', 'config.json')]],
  ['AutoencoderKLWan', AutoencoderKLWanConfig, [json(fixtureDir('wan-vae-2.1'), 'vae', 'config.json'), json(fixtureDir('wan-vae-2.2'), 'vae', 'config.json')]],
  ['UMT5EncoderModel', UMT5Config, [json(fixtureDir('umt5-encoder'), 'text_encoder', 'config.json')]],
  ['UniPC', FlowUniPCConfig, [json(fixtureDir('scheduler-unipc'), 'scheduler', 'scheduler_config.json'), { _class_name: 'FlowUniPCMultistepScheduler', shift: 5 }]],
  ['FlowMatchEuler', FlowMatchEulerConfig, [json(fixtureDir('scheduler-euler'), 'scheduler', 'scheduler_config.json')]],
  ['DPM-Solver++', FlowDPMSolverConfig, [json(fixtureDir('scheduler-dpmpp'), 'scheduler', 'scheduler_config.json'), { _class_name: 'FlowDPMSolverMultistepScheduler' }]],
] as unknown as Array<[string, ConfigSchema<Fields, string>, ConfigJson[]]>;

/** JSON values of every kind, Python's non-finite numbers included. */
const anyJson = fc.oneof(fc.jsonValue(), fc.constantFrom(NaN, Infinity, -Infinity, -1, 0, 0.5, 1e30, 'epsilon', [], [1, 2, 3], null));

describe('Python JSON', () => {
  it('reads NaN, Infinity and -Infinity outside strings, and leaves strings alone', () => {
    const v = parsePythonJson('{"a": NaN, "b": [Infinity, -Infinity, 1], "c": "NaN and -Infinity", "d": "\\u0000NaN0", "e": NaN}') as Record<string, unknown>;
    expect(Number.isNaN(v.a) && Number.isNaN(v.e)).toBe(true);
    expect(v.b).toEqual([Infinity, -Infinity, 1]);
    expect(v.c).toBe('NaN and -Infinity');
    expect(v.d).toBe('\u0000NaN0');
    expect(parsePythonJson('{"x": [1, 2]}')).toEqual({ x: [1, 2] });
    expect(() => parsePythonJson('{"x": Nan}')).toThrow(SyntaxError);
    expect(() => parsePythonJson('{"x": NaN')).toThrow(SyntaxError);
  });

  it('a config read with NaN or Infinity names the field that cannot take it', () => {
    expect(() => WanTransformerConfig.fromJSON(parsePythonJson('{"eps": Infinity}'))).toThrow(/"eps" must be a positive number, got the number Infinity/);
    expect(() => UMT5Config.fromJSON(parsePythonJson('{"layer_norm_epsilon": NaN}'))).toThrow(/"layer_norm_epsilon" must be a positive number, got the number NaN/);
    // lambda_min_clipped: -Infinity (an option the port ignores) beside the fields it reads
    expect(FlowDPMSolverConfig.fromJSON(json(fixtureDir('scheduler-dpmpp'), 'scheduler', 'scheduler_config.json')).flowShift).toBe(5);
  });
});

describe.each(SCHEMAS)('%s config', (_name, schema, fixtures) => {
  const configs = [schema.defaults, ...Object.values(schema.presets), ...fixtures.map((j) => schema.fromJSON(j))];

  it('toJSON → fromJSON gives the config back; getConfig copies it', () => {
    for (const c of configs) {
      expect(schema.fromJSON(schema.toJSON(c))).toEqual(c);
      expect(schema.resolve(c)).toEqual(c);
      const copy = schema.getConfig(c);
      expect(copy).toEqual(c);
      for (const [k, v] of Object.entries(copy)) if (Array.isArray(v)) expect(v).not.toBe((c as Record<string, unknown>)[k]);
    }
  });

  it('a bad value of any field is a ConfigError naming the field as the input spells it', () => {
    const named = Object.entries(schema.fields);
    fc.assert(
      fc.property(fc.constantFrom(...named), anyJson, ([name, f], value) => {
        const valid = f.type.parse(value) !== undefined;
        if (f.key !== null) {
          let error: unknown;
          try {
            schema.fromJSON({ ...schema.toJSON(schema.defaults), [f.key]: value });
          } catch (e) {
            error = e;
          }
          if (!valid && !(value === null && f.sameAs)) {
            expect(error).toBeInstanceOf(ConfigError);
            expect((error as Error).message).toContain(`"${f.key}" must be ${f.type.expected}`);
          }
          if (error !== undefined) expect(error).toBeInstanceOf(ConfigError);
        }
        let error: unknown;
        try {
          schema.resolve({ [name]: value });
        } catch (e) {
          error = e;
        }
        if (!valid && value !== undefined) {
          expect(error).toBeInstanceOf(ConfigError);
          expect((error as Error).message).toContain(`${name} must be ${f.type.expected}`);
        }
      }),
      { numRuns: 300, seed: 16 },
    );
  });
});

describe('field meanings (where the old per-file guards had drifted)', () => {
  it('positive numbers are finite and > 0 in every model: eps, layer_norm_epsilon, latents_std; dropout is a probability', () => {
    expect(() => WanTransformerConfig.fromJSON({ eps: 0 })).toThrow(/"eps" must be a positive number/);
    expect(() => UMT5Config.fromJSON({ layer_norm_epsilon: -1e-6 })).toThrow(/"layer_norm_epsilon" must be a positive number/);
    const std = [...AutoencoderKLWanConfig.defaults.latentsStd];
    std[3] = -1;
    expect(() => AutoencoderKLWanConfig.fromJSON({ latents_std: std })).toThrow(/"latents_std" must be a list of positive numbers/);
    expect(() => AutoencoderKLWanConfig.resolve({ dropout: 1.5 })).toThrow(/dropout must be a number in \[0, 1\]/);
    expect(AutoencoderKLWanConfig.fromJSON({ latents_mean: AutoencoderKLWanConfig.defaults.latentsMean.map((m) => -m) }).latentsMean[0]).toBe(0.7571);
  });

  it('out_channels null or absent is in_channels, as Diffusers reads it', () => {
    expect(WanTransformerConfig.fromJSON({ in_channels: 48, out_channels: null }).outChannels).toBe(48);
    expect(WanTransformerConfig.fromJSON({ in_channels: 36 }).outChannels).toBe(36);
    expect(WanTransformerConfig.fromJSON({ in_channels: 36, out_channels: 16 }).outChannels).toBe(16);
  });

  it('presets are data, read by name', () => {
    expect(WanTransformerConfig.resolve(PRESETS['wan2.2-ti2v-5b']).inChannels).toBe(48);
    expect(AutoencoderKLWanConfig.resolve('wan2.2').zDim).toBe(48);
    expect(() => UMT5Config.resolve('umt5-huge' as 'umt5-xxl')).toThrow(/unknown preset "umt5-huge"; valid: umt5-xxl/);
  });
});

describe('scheduler dialects and unsupported options', () => {
  it("the Wan repo's classes: `shift`, the 'wan' sigma schedule, flow_prediction by default; written back the same way", () => {
    const c = FlowUniPCConfig.fromJSON({ _class_name: 'FlowUniPCMultistepScheduler', shift: 5, solver_type: 'midpoint' });
    expect(c).toMatchObject({ flowShift: 5, sigmaSchedule: 'wan', predictionType: 'flow_prediction', solverType: 'bh2' });
    const written = FlowUniPCConfig.toJSON(c);
    expect(written).toMatchObject({ _class_name: 'FlowUniPCMultistepScheduler', shift: 5 });
    expect(written).not.toHaveProperty('flow_shift');
    expect(FlowUniPCConfig.toJSON(defaultFlowUniPCConfig)).toMatchObject({ _class_name: 'UniPCMultistepScheduler', flow_shift: 3, use_flow_sigmas: true, thresholding: false });
  });

  it("Diffusers' defaults this port does not implement are refused by name", () => {
    expect(() => FlowUniPCConfig.fromJSON({ use_flow_sigmas: true })).toThrow(/"prediction_type" is not set, which the reference reads as "epsilon"; it must be "flow_prediction"/);
    expect(() => FlowUniPCConfig.fromJSON({ prediction_type: 'flow_prediction' })).toThrow(/"use_flow_sigmas" is not set, which the reference reads as false; only true is supported/);
    expect(() => FlowMatchEulerConfig.fromJSON({ stochastic_sampling: true })).toThrow(/"stochastic_sampling" = true is not supported \(only false\)/);
    expect(() => FlowDPMSolverConfig.fromJSON({ _class_name: 'DDIMScheduler' })).toThrow(/_class_name "DDIMScheduler" is not a DPM-Solver\+\+ scheduler/);
    expect(() => FlowUniPCConfig.resolve({ sigmaSchedule: 'wan', finalSigmasType: 'sigma_min' })).toThrow(/finalSigmasType "sigma_min" is not available with the 'wan' sigma schedule/);
  });
});
