import type { ConfigJson } from '../src/config/config-schema.js';
import type { TensorSource } from './safetensors.js';

/** A model config as a checkpoint gives it: JSON in the model's own keys, or a published config by name. */
export type CheckpointConfig = { readonly json: ConfigJson } | { readonly preset: string };

/**
 * One way a model family's checkpoints are written: how to recognise it from the tensors, where its
 * config comes from, and how its keys map onto the model's. Data plus small functions of keys,
 * shapes and JSON; a layout knows no layer class.
 */
export interface ComponentLayout {
  /** Shown by inspect and in messages: "Diffusers keys", "original Wan keys". */
  readonly name: string;
  /** Whether a checkpoint holding these tensors is in this layout; a family's layouts are tried in order. */
  matches(source: TensorSource): boolean;
  /** Whether the config file beside the checkpoint is this component's (not so in an original release root, whose config.json is the DiT's). */
  readonly readsConfigFile: boolean;
  /** The config: from the config file's JSON when there is one, else from the tensor shapes; undefined when neither gives it. */
  config(file: ConfigJson | undefined, source: TensorSource): CheckpointConfig | undefined;
  /** Checkpoint key → model key (undefined skips the tensor). `config` is the model's whole config as JSON. */
  rename(source: TensorSource, config: ConfigJson): (key: string) => string | undefined;
}

/** Where a component's files are: its folder in a model root, its config file, its checkpoint files. */
export interface ComponentFiles {
  /** Shown in messages: "Wan transformer", "tokenizer". */
  readonly name: string;
  /** Folders in a model root that hold the component, tried in order ('text_encoder'; 'tokenizer', 'google/umt5-xxl'). */
  readonly subfolders: readonly string[];
  /** The config file in the component's folder. */
  readonly configFile: string;
  /** Checkpoint file stem in the folder (`diffusion_pytorch_model`, `model`); without one, the folder's only checkpoint. */
  readonly stem?: string;
  /** Checkpoint files an original release keeps in its root among other components, by name (`models_t5_*`). */
  readonly releaseFiles?: RegExp;
  /** Added to the message when nothing is found. */
  readonly hint?: string;
}

/** A model family: its files and the layouts its checkpoints come in. */
export interface ComponentFamily extends ComponentFiles {
  /** Whether a checkpoint's keys are this family's (for inspect). */
  recognizes(keys: readonly string[]): boolean;
  /** Tried in order; the last is the fallback. */
  readonly layouts: readonly [ComponentLayout, ...ComponentLayout[]];
  /** Published configs a caller may name in options.config, for messages. */
  readonly presetHint?: string;
}
