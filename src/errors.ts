import { safeText } from './describe.js';

/** Base class of every error the library throws on purpose. */
export class WanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * A checkpoint file, folder or tensor is missing, malformed or does not fit the model. The
 * message shows the file and tensor name escaped onto one line and cut to a readable length
 * (names come from untrusted headers); `file` and `tensor` keep them whole.
 */
export class CheckpointError extends WanError {
  constructor(
    message: string,
    readonly file?: string,
    readonly tensor?: string,
  ) {
    super(
      [file ? safeText(file, 500) : undefined, tensor !== undefined ? `tensor '${safeText(tensor, 120)}'` : undefined, message]
        .filter((s) => s !== undefined)
        .join(': '),
    );
  }
}

/** An argument has the wrong shape; the message names the argument, what was given and what is valid. */
export class ShapeError extends WanError {
  constructor(
    readonly argument: string,
    readonly got: string,
    readonly expected: string,
    readonly nearest?: string,
  ) {
    super(
      `${argument}: got ${got}, expected ${expected}` + (nearest ? ` (nearest valid: ${nearest})` : ''),
    );
  }
}

/** A model or scheduler configuration is invalid or inconsistent. */
export class ConfigError extends WanError {}

/** A requested backend is unavailable or lacks a kernel a model needs. */
export class BackendError extends WanError {}

/** An operation was stopped through an AbortSignal. */
export class AbortError extends WanError {
  constructor(message = 'The operation was aborted') {
    super(message);
  }
}

/**
 * A call would need more memory than the backend has: `argument` is the option to reduce,
 * `neededBytes` a lower bound of what the call would allocate, `availableBytes` what is free.
 * When an allocation itself failed on the device, `op` names the kernel (or upload) that did not
 * fit, `neededBytes` is that allocation and `inUseBytes` what the backend held at the time.
 */
export class OutOfMemoryError extends WanError {
  readonly op?: string;
  readonly inUseBytes?: number;

  constructor(
    readonly argument: string,
    readonly neededBytes: number,
    readonly availableBytes: number,
    message: string,
    allocation?: { readonly op: string; readonly inUseBytes: number },
  ) {
    super(`${argument}: ${message}`);
    this.op = allocation?.op;
    this.inUseBytes = allocation?.inUseBytes;
  }
}

/** A tensor holds NaN or ±Infinity: an input (`step` undefined) or the latents after denoising step `step`. */
export class NonFiniteError extends WanError {
  constructor(
    readonly argument: string,
    message: string,
    readonly step?: number,
  ) {
    super(`${argument}: ${message}`);
  }
}
