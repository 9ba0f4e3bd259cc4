import { WanError } from '../errors.js';

/** A video could not be written: no encoder (ffmpeg) available, or the encoder failed. */
export class VideoEncoderError extends WanError {}

/** A video or image file could not be parsed (malformed, truncated, or an unsupported variant). */
export class VideoFormatError extends WanError {}
