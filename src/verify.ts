import { parseArgs } from 'node:util';
import { ConfigError } from './errors.js';
import { sidecarPath, verifyClip } from './video/provenance.js';
import { VideoFormatError } from './video/video-error.js';

/** Where `verify` writes. */
export interface VerifyIO {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

export const VERIFY_USAGE = `wan-tfjs verify — check a clip against its provenance sidecar

Usage:
  wan-tfjs verify <clip.mp4 | clip.gif | clip.png | PNG frames folder>

Recomputes the clip's content hash and reads the record embedded in it, and compares both with
<clip>.json, the sidecar written beside it. Exit codes: 0 they match (one line, OK), 1 something
differs (one line each), 2 the clip or its sidecar cannot be read.
`;

/** `wan-tfjs verify <clip>`: 0 when the clip matches its sidecar, 1 with what differs, 2 for unreadable input. */
export function verifyCommand(args: readonly string[], io: VerifyIO): number {
  const { values, positionals } = parseArgs({ args: [...args], strict: true, allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    io.stdout.write(VERIFY_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new ConfigError(`verify takes one clip (a file or a PNG frames folder), got ${positionals.length}`);
  const clip = positionals[0];
  let result: ReturnType<typeof verifyClip>;
  try {
    result = verifyClip(clip);
  } catch (e) {
    if (!(e instanceof VideoFormatError)) throw e;
    io.stderr.write(`wan-tfjs: verify: ${e.message}\n`);
    return 2;
  }
  if (!result.ok) {
    for (const d of result.differences) io.stderr.write(`wan-tfjs: verify: ${clip}: ${d}\n`);
    return 1;
  }
  const p = result.sidecar.provenance;
  io.stdout.write(`OK ${clip}: sha256 ${result.sidecar.sha256} and its embedded record match ${sidecarPath(clip)} (seed ${p.seed}, model ${p.model.id}, ${p.createdAt})\n`);
  return 0;
}
