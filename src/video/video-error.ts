import { WanError } from '../errors.js';

/** A video could not be written: no encoder (ffmpeg) available, or the encoder failed. */
export class VideoEncoderError extends WanError {}

/** A video or image file could not be parsed (malformed, truncated, or an unsupported variant). */
export class VideoFormatError extends WanError {}

/**
 * The file system refused an output (permissions, a read-only or full disk, a folder in the way, a
 * name too long …): `path` is the output asked for, `code` the system's (EACCES, ENOSPC …), and the
 * message says what to do. The system's error is the `cause`.
 */
export class OutputFileError extends WanError {
  constructor(
    readonly path: string,
    readonly code: string,
    message: string,
    cause: unknown,
  ) {
    super(message);
    this.cause = cause;
  }
}
