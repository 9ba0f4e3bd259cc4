import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeValue, safeText } from '../src/describe.js';
import { CheckpointError } from '../src/errors.js';
import { SafetensorsFile, type HostTensor, type TensorInfo, type TensorSource } from './safetensors.js';

/** A checkpoint split over several safetensors files by a `*.safetensors.index.json`. */
export class ShardedCheckpoint implements TensorSource {
  private readonly shards = new Map<string, SafetensorsFile>();
  private readonly weightMap: ReadonlyMap<string, string>;

  private constructor(readonly indexPath: string, weightMap: Map<string, string>) {
    this.weightMap = weightMap;
  }

  get label(): string {
    return this.indexPath;
  }

  /** Opens an index file and validates every shard header (shards stay open for reading). */
  static open(indexPath: string): ShardedCheckpoint {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(indexPath, 'utf-8'));
    } catch (e) {
      throw new CheckpointError(`cannot read the shard index (${safeText((e as Error).message)})`, indexPath);
    }
    const wm = (parsed as { weight_map?: unknown } | null)?.weight_map;
    if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
      throw new CheckpointError('the shard index has no "weight_map" object', indexPath);
    }
    const weightMap = new Map<string, string>();
    for (const [k, v] of Object.entries(wm)) {
      if (typeof v !== 'string' || v === '' || v === '.' || v === '..' || v.includes('/') || v.includes('\\')) {
        throw new CheckpointError(`weight_map entry ${describeValue(v)} is not a shard file name`, indexPath, k);
      }
      weightMap.set(k, v);
    }
    const ckpt = new ShardedCheckpoint(indexPath, weightMap);
    try {
      const dir = path.dirname(indexPath);
      for (const shard of new Set(weightMap.values())) {
        const f = SafetensorsFile.open(path.join(dir, shard));
        ckpt.shards.set(shard, f);
      }
      for (const [k, shard] of weightMap) {
        if (!ckpt.shards.get(shard)!.has(k)) {
          throw new CheckpointError(`the index places it in ${shard}, which does not hold it`, indexPath, k);
        }
      }
    } catch (e) {
      ckpt.close();
      throw e;
    }
    return ckpt;
  }

  keys(): string[] {
    return [...this.weightMap.keys()];
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  private shardOf(name: string): SafetensorsFile {
    const shard = this.weightMap.get(name);
    if (shard === undefined) throw new CheckpointError('not listed in the shard index', this.indexPath, name);
    return this.shards.get(shard)!;
  }

  info(name: string): TensorInfo & { file: string } {
    return this.shardOf(name).info(name);
  }

  read(name: string): HostTensor {
    return this.shardOf(name).read(name);
  }

  readRaw(name: string): Uint8Array {
    return this.shardOf(name).readRaw(name);
  }

  close(): void {
    for (const f of this.shards.values()) f.close();
  }
}

/**
 * Opens the checkpoint in `dir` whose files start with `stem` (e.g. `diffusion_pytorch_model`,
 * `model`): `stem.safetensors.index.json` (sharded) or `stem.safetensors`; failing both, the only
 * `*.safetensors` file in the folder. A `.pth`/`.bin` file instead raises a CheckpointError
 * saying it must be converted first.
 */
export function openCheckpoint(dir: string, stem?: string): TensorSource {
  if (fs.existsSync(dir) && fs.statSync(dir).isFile()) {
    return dir.endsWith('.index.json') ? ShardedCheckpoint.open(dir) : SafetensorsFile.open(dir);
  }
  if (!fs.existsSync(dir)) throw new CheckpointError('folder does not exist', dir);
  const files = fs.readdirSync(dir);
  const stems = stem ? [stem] : [...new Set(files.filter((f) => f.endsWith('.safetensors.index.json')).map((f) => f.slice(0, -'.safetensors.index.json'.length)))];
  for (const s of stems) {
    if (files.includes(`${s}.safetensors.index.json`)) return ShardedCheckpoint.open(path.join(dir, `${s}.safetensors.index.json`));
    if (files.includes(`${s}.safetensors`)) return SafetensorsFile.open(path.join(dir, `${s}.safetensors`));
  }
  const st = files.filter((f) => f.endsWith('.safetensors'));
  if (st.length === 1) return SafetensorsFile.open(path.join(dir, st[0]));
  const pickled = files.filter((f) => /\.(pth|pt|bin|ckpt)$/.test(f));
  if (pickled.length > 0) {
    throw new CheckpointError(
      `only PyTorch pickle files found (${pickled.join(', ')}); convert them to safetensors first ` +
        '(python: safetensors.torch.save_file(torch.load(f, map_location="cpu"), "model.safetensors"))',
      dir,
    );
  }
  throw new CheckpointError(
    st.length > 1
      ? `several .safetensors files (${st.join(', ')}) and no index naming ${stem ?? 'them'}`
      : `no ${stem ? `${stem}.safetensors[.index.json]` : '.safetensors file'} found`,
    dir,
  );
}
