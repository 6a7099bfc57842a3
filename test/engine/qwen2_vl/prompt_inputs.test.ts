// A rendered prompt to one sequence's ids and M-RoPE positions, with a fake tokenizer (no model).
import { IMAGE_PLACEHOLDER } from '../../../src/engine/prompts';
import { promptInputs } from '../../../src/engine/qwen2_vl/prompt_inputs';
import { expectEngineError } from '../../helpers/errors';

const VISION = { imageTokenId: 151655, visionStartTokenId: 151652, spatialMergeSize: 2 };
const SPECIAL: Record<string, number> = { '<|vision_start|>': 151652, '<|image_pad|>': 151655, '<|vision_end|>': 151653 };

/** Special tokens by their ids, every other character by its code. */
function encode(text: string): number[] {
  return text.split(/(<\|[a-z_]+\|>)/).flatMap((part) => (part in SPECIAL ? [SPECIAL[part]] : Array.from(part, (c) => c.charCodeAt(0))));
}

test('an image placeholder becomes the image tokens, numbered on three axes; text resumes after the image', () => {
  const inputs = promptInputs(`ab${IMAGE_PLACEHOLDER}c`, encode, [{ grid: [1, 4, 4], tokens: 4 }], VISION, 100);
  expect(inputs.inputIds).toEqual([97, 98, 151652, 151655, 151655, 151655, 151655, 151653, 99]);
  expect(inputs.positionIds).toEqual([
    ...[0, 1, 2, 3, 3, 3, 3, 5, 6], // temporal
    ...[0, 1, 2, 3, 3, 4, 4, 5, 6], // height
    ...[0, 1, 2, 3, 4, 3, 4, 5, 6], // width
  ]);
  expect(inputs.nextPosition).toBe(7);
});

test('a text prompt numbers its tokens alike on every axis and generates from its length', () => {
  const inputs = promptInputs('hello', encode, [], VISION, 100);
  expect(inputs.positionIds).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
  expect(inputs.nextPosition).toBe(5);
});

test('placeholders and images must match in number', () => {
  expectEngineError(() => promptInputs(`a${IMAGE_PLACEHOLDER}`, encode, [], VISION, 100), 'invalid_input', 'image_count_mismatch');
  expectEngineError(() => promptInputs('a', encode, [{ grid: [1, 2, 2], tokens: 1 }], VISION, 100), 'invalid_input', 'image_count_mismatch');
});

test('the prompt limit counts the expanded image tokens', () => {
  const image = [{ grid: [1, 4, 4] as [number, number, number], tokens: 4 }];
  expect(promptInputs(`ab${IMAGE_PLACEHOLDER}c`, encode, image, VISION, 9).inputIds).toHaveLength(9);
  expectEngineError(() => promptInputs(`ab${IMAGE_PLACEHOLDER}c`, encode, image, VISION, 8), 'too_large', 'prompt_too_long');
});
