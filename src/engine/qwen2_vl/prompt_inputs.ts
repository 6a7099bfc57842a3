// A rendered prompt and its images to the inputs of one Qwen2-VL sequence: token ids with each
// image's placeholder expanded to its tokens (docs/qwen2-vl.md, "Image tokens") and the M-RoPE
// position ids of the prompt with the position of the first generated token ("M-RoPE position
// ids"). Pure: the tokenizer comes in as a function, the images as their grids and token counts.
import { EngineError } from '../errors';
import { IMAGE_PLACEHOLDER } from '../prompts';
import { expandImageTokens, MropeConfig, ropeIndex } from './mrope';

export interface PromptImageLayout {
  grid: [number, number, number];
  /** `<|image_pad|>` tokens the image takes. */
  tokens: number;
}

export interface PromptInputs {
  /** Prompt ids with every image placeholder expanded to its token count. */
  inputIds: number[];
  /** M-RoPE positions, axis-major: [3 * inputIds.length]. */
  positionIds: number[];
  /** Position of the first generated token. */
  nextPosition: number;
}

/**
 * Ids and positions of `text` (a rendered prompt holding one IMAGE_PLACEHOLDER per image, in
 * order). Refuses a placeholder count that differs from the images given, and a prompt longer than
 * `maxPromptTokens` once its images are expanded.
 */
export function promptInputs(
  text: string,
  encode: (text: string) => ArrayLike<number>,
  images: readonly PromptImageLayout[],
  vision: MropeConfig,
  maxPromptTokens: number,
): PromptInputs {
  const placeholders = text.split(IMAGE_PLACEHOLDER).length - 1;
  if (placeholders !== images.length) {
    throw new EngineError('invalid_input', 'image_count_mismatch', `the prompt has ${placeholders} image placeholder(s) but ${images.length} image(s) were given`);
  }
  const ids = expandImageTokens(encode(text), vision.imageTokenId, images.map((i) => i.tokens));
  if (ids.length > maxPromptTokens) {
    throw new EngineError('too_large', 'prompt_too_long', `the prompt is ${ids.length} tokens (images included); the limit is ${maxPromptTokens}`);
  }
  const { positionIds, ropeDeltas } = ropeIndex([ids], null, images.map((i) => i.grid), {
    imageTokenId: vision.imageTokenId,
    visionStartTokenId: vision.visionStartTokenId,
    spatialMergeSize: vision.spatialMergeSize,
  });
  return { inputIds: ids, positionIds: positionIds.flatMap((axis) => axis[0]), nextPosition: ids.length + ropeDeltas[0] };
}
