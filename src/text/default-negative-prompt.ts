/**
 * Wan's default negative prompt: `sample_neg_prompt` of `wan/configs/shared_config.py` (Wan2.1 and
 * Wan2.2, byte for byte; full-width commas U+FF0C). The original repos use it when no negative
 * prompt is given; Diffusers' WanPipeline uses "" instead.
 *
 * In English: garish colours, overexposed, static, blurry details, subtitles, style, artwork,
 * painting, picture, still, overall greyish, worst quality, low quality, JPEG compression
 * artefacts, ugly, mutilated, extra fingers, badly drawn hands, badly drawn face, deformed,
 * disfigured, malformed limbs, fused fingers, motionless picture, cluttered background, three
 * legs, many people in the background, walking backwards.
 */
export const DEFAULT_NEGATIVE_PROMPT =
  '色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走';
