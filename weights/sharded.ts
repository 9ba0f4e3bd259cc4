import { describeValue, safeText } from '../src/describe.js';
import { CheckpointError } from '../src/errors.js';
import { filePaths, fileSystem } from './file-system.js';
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
      parsed = JSON.parse(fileSystem().readFileSync(indexPath, 'utf-8'));
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
      const path = filePaths();
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

  readRawInto(name: string, dest: Uint8Array, offset?: number): void {
    this.shardOf(name).readRawInto(name, dest, offset);
  }

  close(): void {
    for (const f of this.shards.values()) f.close();
  }
}
