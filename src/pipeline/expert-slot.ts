import { ConfigError } from '../errors.js';
import type { PipelineTransformer } from './pipeline-components.js';

/**
 * Where the two A14B experts live: 'both' on the device; 'swap' both loaded once, the one not in
 * use in pinned host memory and copied back at the boundary (backend 'cuda'); 'active' only the one
 * in use loaded (the other freed and read from disk again at the boundary).
 */
export type ExpertResidency = 'both' | 'swap' | 'active';

/** One expert: a loaded model, and (optionally) how to load it again after it was released. */
export class ExpertSlot {
  private model: PipelineTransformer | undefined;

  constructor(
    readonly name: string,
    model: PipelineTransformer | undefined,
    private readonly loader?: () => Promise<PipelineTransformer>,
  ) {
    this.model = model;
    if (!model && !loader) throw new ConfigError(`expert '${name}': give a model or a loader`);
  }

  get resident(): boolean {
    return this.model !== undefined;
  }

  /** The loaded model, if any (no loading). */
  get current(): PipelineTransformer | undefined {
    return this.model;
  }

  get canReload(): boolean {
    return this.loader !== undefined;
  }

  async get(): Promise<PipelineTransformer> {
    if (this.model) return this.model;
    if (!this.loader) throw new ConfigError(`expert '${this.name}' was disposed and has no loader`);
    this.model = await this.loader();
    return this.model;
  }

  /** Frees the weights; the next `get` reloads them. */
  release(): void {
    if (!this.loader) throw new ConfigError(`expert '${this.name}' was given without a loader and cannot be released and reloaded`);
    this.dispose();
  }

  dispose(): void {
    const m = this.model;
    this.model = undefined;
    m?.dispose();
  }
}
