// Qwen2-VL image preprocessing (docs/preprocessing.md; docs/qwen2-vl.md, "Image tokens"), matching
// transformers' `Qwen2VLImageProcessorPil` numerically: decode -> RGB (PIL `convert('RGB')`
// semantics) -> smart_resize -> Pillow bicubic resize (byte-exact re-implementation) -> x/255,
// mean/std normalisation (float32, same operation order as NumPy) -> temporal duplication and
// patchify in the processor's row order.
//
// Decoding is `../images/decoding.ts` (sharp decodes only: no resize, no colour management, no EXIF
// rotation), the resize `../images/bicubic.ts`; this module holds what is Qwen2-VL's: the
// processor's configuration, smart_resize and the grid, normalisation and patch order. Everything
// after the decoded 8-bit pixels is our code, so results do not depend on libvips' resamplers.
//
// This module must stay free of onnxruntime and HTTP: errors are EngineErrors with a `kind`.
import { EngineError } from '../errors';
import { resizeBicubic } from '../images/bicubic';
import { decodeImage, DecodeLimits, RgbImage } from '../images/decoding';

// ---------------------------------------------------------------------------------------------------
// Configuration

export interface ImageProcessorConfig {
  /** Lower bound on resized height*width (preprocessor_config `min_pixels` / `size.shortest_edge`). */
  minPixels: number;
  /** Upper bound on resized height*width (preprocessor_config `max_pixels` / `size.longest_edge`). */
  maxPixels: number;
  /** Spatial patch size of the vision encoder (14). */
  patchSize: number;
  /** Spatial merge size (2): image tokens per image = grid_h * grid_w / mergeSize^2. */
  mergeSize: number;
  /** Temporal patch size (2): a still image is repeated this many times. */
  temporalPatchSize: number;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  /** preprocessor_config `rescale_factor`; 1/255 for every Qwen2-VL checkpoint. */
  rescaleFactor: number;
}

/** OpenAI CLIP mean/std, transformers' `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`. */
export const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/**
 * transformers' `Qwen2VLImageProcessorPil` class defaults, used for keys a preprocessor_config.json
 * lacks. Note max_pixels: the class default is 28*28*1280 = 1,003,520, while the Qwen2-VL checkpoints
 * ship `max_pixels: 12845056` in their preprocessor_config.json (which then wins).
 */
export const DEFAULT_IMAGE_PROCESSOR_CONFIG: Readonly<ImageProcessorConfig> = Object.freeze({
  minPixels: 56 * 56,
  maxPixels: 28 * 28 * 1280,
  patchSize: 14,
  mergeSize: 2,
  temporalPatchSize: 2,
  imageMean: CLIP_MEAN,
  imageStd: CLIP_STD,
  rescaleFactor: 1 / 255,
});

function configError(message: string): EngineError {
  return new EngineError('model_error', 'invalid_preprocessor_config', `preprocessor_config.json: ${message}`);
}

function readPositiveInt(json: Record<string, unknown>, key: string, fallback: number): number {
  const value = json[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw configError(`${key} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function readTriple(json: Record<string, unknown>, key: string, fallback: [number, number, number], positive: boolean): [number, number, number] {
  const value = json[key];
  if (value === undefined || value === null) return [...fallback];
  // A scalar applies to every channel, as in transformers' normalize().
  const list = typeof value === 'number' ? [value, value, value] : value;
  if (!Array.isArray(list) || list.length !== 3 || !list.every((v) => typeof v === 'number' && Number.isFinite(v) && (!positive || v > 0))) {
    throw configError(`${key} must be 3 finite numbers${positive ? ' > 0' : ''}, got ${JSON.stringify(value)}`);
  }
  return [list[0], list[1], list[2]];
}

/**
 * The image settings of a model folder's preprocessor_config.json, with Qwen2-VL's defaults for
 * anything missing. Precedence as in `Qwen2VLImageProcessor.__init__`: top-level `min_pixels` /
 * `max_pixels`, then `size.shortest_edge` / `size.longest_edge` (or `size.min_pixels` /
 * `size.max_pixels` of older folders). `overrides` are the service's MAX_PIXELS / MIN_PIXELS:
 * `maxPixels` is a ceiling, so a model whose folder asks for smaller images (one trained on them,
 * such as the embedded nano models) keeps its bound, and `minPixels` never exceeds the maximum.
 */
export function imageProcessorConfig(
  preprocessorJson: Record<string, unknown>,
  overrides: { minPixels?: number; maxPixels?: number } = {},
): ImageProcessorConfig {
  const defaults = DEFAULT_IMAGE_PROCESSOR_CONFIG;
  const sizeValue = preprocessorJson.size;
  const size = typeof sizeValue === 'object' && sizeValue !== null && !Array.isArray(sizeValue) ? (sizeValue as Record<string, unknown>) : {};
  let minPixels = readPositiveInt(size, 'shortest_edge', readPositiveInt(size, 'min_pixels', defaults.minPixels));
  let maxPixels = readPositiveInt(size, 'longest_edge', readPositiveInt(size, 'max_pixels', defaults.maxPixels));
  minPixels = readPositiveInt(preprocessorJson, 'min_pixels', minPixels);
  maxPixels = readPositiveInt(preprocessorJson, 'max_pixels', maxPixels);
  if (overrides.maxPixels !== undefined) maxPixels = Math.min(maxPixels, readPositiveInt({ max_pixels: overrides.maxPixels }, 'max_pixels', maxPixels));
  if (overrides.minPixels !== undefined) minPixels = Math.min(maxPixels, readPositiveInt({ min_pixels: overrides.minPixels }, 'min_pixels', minPixels));
  if (minPixels > maxPixels) throw configError(`min_pixels ${minPixels} is greater than max_pixels ${maxPixels}`);

  const rescale = preprocessorJson.rescale_factor;
  if (rescale !== undefined && rescale !== null && (typeof rescale !== 'number' || !Number.isFinite(rescale) || rescale <= 0)) {
    throw configError(`rescale_factor must be a positive number, got ${JSON.stringify(rescale)}`);
  }
  for (const flag of ['do_rescale', 'do_normalize', 'do_resize', 'do_convert_rgb']) {
    if (preprocessorJson[flag] === false) throw configError(`${flag}: false is not supported (Qwen2-VL always applies it)`);
  }
  return {
    minPixels,
    maxPixels,
    patchSize: readPositiveInt(preprocessorJson, 'patch_size', defaults.patchSize),
    mergeSize: readPositiveInt(preprocessorJson, 'merge_size', defaults.mergeSize),
    temporalPatchSize: readPositiveInt(preprocessorJson, 'temporal_patch_size', defaults.temporalPatchSize),
    imageMean: readTriple(preprocessorJson, 'image_mean', defaults.imageMean, false),
    imageStd: readTriple(preprocessorJson, 'image_std', defaults.imageStd, true),
    rescaleFactor: typeof rescale === 'number' ? rescale : defaults.rescaleFactor,
  };
}

// ---------------------------------------------------------------------------------------------------
// smart_resize

/** The largest max(h, w) / min(h, w) the reference accepts. */
export const MAX_ASPECT_RATIO = 200;

/** Python 3 `round()` of a float to an integer: ties go to the even neighbour (2.5 -> 2, 3.5 -> 4). */
export function roundHalfToEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor; // exact for doubles
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * transformers' `smart_resize`: the size an image is resized to, both sides multiples of `factor`
 * (patch * merge = 28), area within [minPixels, maxPixels], aspect ratio kept as far as possible.
 * Same double-precision operations in the same order as the Python, so the same result.
 */
export function smartResize(height: number, width: number, factor: number, minPixels: number, maxPixels: number): { height: number; width: number } {
  if (!(height >= 1 && width >= 1)) {
    throw new EngineError('unprocessable', 'empty_image', `the image has no pixels (${width}x${height})`);
  }
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > MAX_ASPECT_RATIO) {
    throw new EngineError(
      'unprocessable',
      'image_aspect_ratio',
      `image aspect ratio ${Number(ratio.toPrecision(6))} (${width}x${height}) is over the limit of ${MAX_ASPECT_RATIO}; crop or pad the image`,
    );
  }
  let hBar = roundHalfToEven(height / factor) * factor;
  let wBar = roundHalfToEven(width / factor) * factor;
  if (hBar * wBar > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    hBar = Math.max(factor, Math.floor(height / beta / factor) * factor);
    wBar = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (hBar * wBar < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    hBar = Math.ceil((height * beta) / factor) * factor;
    wBar = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: hBar, width: wBar };
}

/** Grid and image-token count of an image of the given size, without touching its pixels. */
export function imageGrid(
  width: number,
  height: number,
  config: ImageProcessorConfig,
): { gridThw: [number, number, number]; numImageTokens: number; resizedWidth: number; resizedHeight: number } {
  const factor = config.patchSize * config.mergeSize;
  const resized = smartResize(height, width, factor, config.minPixels, config.maxPixels);
  const gridH = resized.height / config.patchSize;
  const gridW = resized.width / config.patchSize;
  return {
    // A still image is one temporal patch (its frame repeated temporalPatchSize times).
    gridThw: [1, gridH, gridW],
    numImageTokens: (gridH * gridW) / (config.mergeSize * config.mergeSize),
    resizedWidth: resized.width,
    resizedHeight: resized.height,
  };
}

// ---------------------------------------------------------------------------------------------------
// Normalisation and patch order

/**
 * Pixel values in the processor's layout from an image already at its smart_resize size:
 * `[gridT * gridH * gridW, channels * temporalPatchSize * patchSize^2]` rows, rows ordered as 2x2
 * (mergeSize^2) blocks taken row-major, each row channel-major, then temporal, then patch pixels.
 *
 * Numerics follow transformers exactly: `float32(uint8 * rescale_factor)` computed in float64
 * (`rescale`), then `(x - mean) / std` in float32 with float32 mean/std (`normalize`); each value is
 * therefore identical to the Python one, not just close.
 */
export function pixelValuesFromRgb(image: RgbImage, config: ImageProcessorConfig): { pixelValues: Float32Array; gridThw: [number, number, number] } {
  const { patchSize, mergeSize, temporalPatchSize } = config;
  const { width, height, data } = image;
  const unit = patchSize * mergeSize;
  if (width < unit || height < unit || width % unit !== 0 || height % unit !== 0) {
    throw new RangeError(`image size ${width}x${height} is not a positive multiple of ${unit}; run smartResize first`);
  }
  if (data.length !== width * height * 3) throw new RangeError(`image data has ${data.length} bytes, expected ${width}x${height}x3`);

  // One float32 per (channel, uint8 value).
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(config.imageMean[c]);
    const std = Math.fround(config.imageStd[c]);
    for (let v = 0; v < 256; v++) {
      const rescaled = Math.fround(v * config.rescaleFactor);
      lut[c * 256 + v] = Math.fround(Math.fround(rescaled - mean) / std);
    }
  }

  const gridH = height / patchSize;
  const gridW = width / patchSize;
  const patchArea = patchSize * patchSize;
  const rowLength = 3 * temporalPatchSize * patchArea;
  const pixelValues = new Float32Array(gridH * gridW * rowLength);
  const blocksH = gridH / mergeSize;
  const blocksW = gridW / mergeSize;
  let row = 0;
  for (let bh = 0; bh < blocksH; bh++) {
    for (let bw = 0; bw < blocksW; bw++) {
      for (let mh = 0; mh < mergeSize; mh++) {
        for (let mw = 0; mw < mergeSize; mw++, row++) {
          const y0 = (bh * mergeSize + mh) * patchSize;
          const x0 = (bw * mergeSize + mw) * patchSize;
          const rowBase = row * rowLength;
          for (let c = 0; c < 3; c++) {
            const lutBase = c * 256;
            const firstFrame = rowBase + c * temporalPatchSize * patchArea;
            let o = firstFrame;
            for (let py = 0; py < patchSize; py++) {
              let p = ((y0 + py) * width + x0) * 3 + c;
              for (let px = 0; px < patchSize; px++, p += 3) pixelValues[o++] = lut[lutBase + data[p]];
            }
            // The still image is repeated for each temporal patch position.
            for (let t = 1; t < temporalPatchSize; t++) {
              pixelValues.copyWithin(firstFrame + t * patchArea, firstFrame, firstFrame + patchArea);
            }
          }
        }
      }
    }
  }
  return { pixelValues, gridThw: [1, gridH, gridW] };
}

// ---------------------------------------------------------------------------------------------------
// All of it

export interface PreprocessedImage {
  /** `[gridT * gridH * gridW, 3 * temporalPatchSize * patchSize^2]`, row-major. */
  pixelValues: Float32Array;
  gridThw: [number, number, number];
  /** `<|image_pad|>` tokens this image takes in the prompt. */
  numImageTokens: number;
  /** Size the model sees (after smart_resize). */
  width: number;
  height: number;
  /** Size of the decoded input. */
  originalWidth: number;
  originalHeight: number;
}

/** Decode, smart-resize (bicubic, only when the size changes), normalise and patchify one image. */
export async function preprocessImage(bytes: Buffer | Uint8Array, config: ImageProcessorConfig, limits: DecodeLimits): Promise<PreprocessedImage> {
  const decoded = await decodeImage(bytes, limits);
  const grid = imageGrid(decoded.width, decoded.height, config);
  const resized =
    grid.resizedWidth === decoded.width && grid.resizedHeight === decoded.height ? decoded : resizeBicubic(decoded, grid.resizedWidth, grid.resizedHeight);
  const { pixelValues, gridThw } = pixelValuesFromRgb(resized, config);
  return {
    pixelValues,
    gridThw,
    numImageTokens: grid.numImageTokens,
    width: resized.width,
    height: resized.height,
    originalWidth: decoded.width,
    originalHeight: decoded.height,
  };
}
