// Qwen2-VL image preprocessing (docs/preprocessing.md; docs/qwen2-vl.md, "Image tokens"), matching
// transformers' `Qwen2VLImageProcessorPil` numerically: decode -> RGB (PIL `convert('RGB')`
// semantics) -> smart_resize -> Pillow bicubic resize (byte-exact re-implementation) -> x/255,
// mean/std normalisation (float32, same operation order as NumPy) -> temporal duplication and
// patchify in the processor's row order.
//
// sharp is used to decode only: no resize, no colour management, no EXIF rotation. Everything after
// the decoded 8-bit pixels is our code, so results do not depend on libvips' resamplers.
//
// This module must stay free of onnxruntime and HTTP: errors are EngineErrors with a `kind`.
import sharp from 'sharp';
import type { Metadata, OutputInfo, SharpOptions } from 'sharp';
import { EngineError } from '../errors';

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
// Decoding

/** 8-bit RGB, row-major HWC (`data.length === width * height * 3`). */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface DecodeLimits {
  /** Largest width*height of an input image accepted; checked from the header, before decoding. */
  maxInputPixels: number;
}

export const ACCEPTED_IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'] as const;
type AcceptedFormat = 'png' | 'jpeg' | 'webp';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(bytes: Uint8Array, prefix: number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}

const ascii = (text: string): number[] => Array.from(text, (c) => c.charCodeAt(0));

/** The format named by the file's magic bytes, or null. Checked before any decoder sees the bytes. */
function sniffFormat(bytes: Uint8Array): AcceptedFormat | null {
  if (startsWith(bytes, PNG_SIGNATURE)) return 'png';
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(bytes, ascii('RIFF')) && startsWith(bytes, ascii('WEBP'), 8)) return 'webp';
  return null;
}

/** Width and height from a PNG's IHDR, read directly so that oversized declarations are refused
 * even where libpng itself would reject them with a generic error. */
function pngHeaderSize(bytes: Uint8Array): { width: number; height: number } | null {
  if (bytes.length < 24 || !startsWith(bytes, ascii('IHDR'), 12)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

function unsupported(detail: string): EngineError {
  return new EngineError('unsupported_media', 'unsupported_image_type', `${detail}; accepted image types: ${ACCEPTED_IMAGE_TYPES.join(', ')}`);
}

function checkPixels(width: number, height: number, limits: DecodeLimits): void {
  if (width < 1 || height < 1) {
    throw new EngineError('unprocessable', 'empty_image', `the image has no pixels (${width}x${height})`);
  }
  if (width * height > limits.maxInputPixels) {
    throw new EngineError(
      'too_large',
      'image_too_many_pixels',
      `the image is ${width}x${height} = ${width * height} pixels, over the limit of ${limits.maxInputPixels} pixels`,
    );
  }
}

function invalidImage(error: unknown): EngineError {
  const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
  if (/exceeds pixel limit/i.test(reason)) {
    return new EngineError('too_large', 'image_too_many_pixels', `the image is over the pixel limit (${reason})`, { cause: error });
  }
  return new EngineError('unprocessable', 'invalid_image', `the image could not be decoded: ${reason}`, { cause: error });
}

/**
 * Decodes PNG, JPEG or WebP bytes to 8-bit RGB exactly as `PIL.Image.open(f).convert('RGB')` gives
 * them (what the reference processor sees):
 * - greyscale is replicated to 3 channels; palettes are expanded; alpha is dropped, not composited;
 * - no colour management (embedded ICC profiles are ignored, as PIL's convert ignores them);
 * - no EXIF rotation (neither PIL nor transformers rotate);
 * - CMYK JPEGs: the decoded CMYK values are converted with Pillow's formula
 *   (r = 255 - k - c(255 - k)/255, rounded the way Pillow rounds), not through an ICC profile;
 * - animated WebP: the first frame only;
 * - 16-bit PNGs: colour (RGB, RGBA) and grey+alpha keep the high byte of each sample, as PIL does.
 *   16-bit greyscale without alpha is the one deliberate difference: PIL opens it as mode 'I;16' and
 *   its RGB conversion clamps every value above 255 to 255 (a nearly white image); we keep the high
 *   byte like every other 16-bit PNG (docs/preprocessing.md).
 * Truncated or corrupt files are refused (EngineError 'unprocessable'), as PIL refuses them.
 */
export async function decodeImage(bytes: Buffer | Uint8Array, limits: DecodeLimits): Promise<RgbImage> {
  if (!Number.isSafeInteger(limits.maxInputPixels) || limits.maxInputPixels < 1) {
    throw new RangeError(`maxInputPixels must be a positive integer, got ${limits.maxInputPixels}`);
  }
  if (bytes.length === 0) throw new EngineError('unprocessable', 'empty_image', 'the image is empty (0 bytes)');
  const sniffed = sniffFormat(bytes);
  if (sniffed === null) throw unsupported('the bytes are not a PNG, JPEG or WebP image');
  if (sniffed === 'png') {
    const declared = pngHeaderSize(bytes);
    if (declared) checkPixels(declared.width, declared.height, limits);
  }

  const options: SharpOptions = {
    failOn: 'error', // truncated and corrupt data fail; harmless libpng warnings (e.g. odd iCCP) do not
    limitInputPixels: limits.maxInputPixels,
    ignoreIcc: true,
    autoOrient: false,
    pages: 1,
    page: 0,
  };
  let metadata: Metadata;
  try {
    metadata = await sharp(bytes, options).metadata();
  } catch (error) {
    throw invalidImage(error);
  }
  if (metadata.format !== sniffed) {
    // e.g. a file whose first bytes claim one format but whose decoder picked another.
    throw unsupported(`the image is ${metadata.format}, not ${sniffed}`);
  }
  // Header dimensions, checked before any pixel is decoded (pageHeight: the first frame).
  checkPixels(metadata.width ?? 0, metadata.pageHeight ?? metadata.height ?? 0, limits);

  const cmyk = metadata.space === 'cmyk';
  let raw: { data: Buffer; info: OutputInfo };
  try {
    let pipeline = sharp(bytes, options);
    // Keep the decoder's CMYK values (the same values PIL reads) instead of libvips' profile-based
    // conversion to sRGB; Pillow's arithmetic conversion follows below.
    if (cmyk) pipeline = pipeline.pipelineColourspace('cmyk').toColourspace('cmyk');
    raw = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw invalidImage(error);
  }
  const { width, height, channels } = raw.info;
  checkPixels(width, height, limits);
  const src = raw.data;
  if (src.length !== width * height * channels) {
    throw new EngineError('unprocessable', 'invalid_image', `the decoder returned ${src.length} bytes for ${width}x${height}x${channels}`);
  }
  const n = width * height;
  const out = new Uint8Array(n * 3);
  if (cmyk) {
    if (channels !== 4) throw new EngineError('unprocessable', 'invalid_image', `a CMYK image decoded to ${channels} channels`);
    for (let i = 0, s = 0, d = 0; i < n; i++, s += 4, d += 3) {
      const nk = 255 - src[s + 3];
      for (let c = 0; c < 3; c++) {
        // Pillow's cmyk2rgb: nk - round(c * nk / 255) with its MULDIV255 rounding.
        const t = src[s + c] * nk + 128;
        const v = nk - (((t >> 8) + t) >> 8);
        out[d + c] = v < 0 ? 0 : v;
      }
    }
  } else if (channels >= 3) {
    // RGB or RGBA: drop alpha (PIL's convert('RGB') discards it).
    for (let i = 0, s = 0, d = 0; i < n; i++, s += channels, d += 3) {
      out[d] = src[s];
      out[d + 1] = src[s + 1];
      out[d + 2] = src[s + 2];
    }
  } else if (channels >= 1) {
    // Grey or grey+alpha: replicate grey.
    for (let i = 0, s = 0, d = 0; i < n; i++, s += channels, d += 3) {
      const v = src[s];
      out[d] = v;
      out[d + 1] = v;
      out[d + 2] = v;
    }
  } else {
    throw new EngineError('unprocessable', 'invalid_image', 'the image decoded to 0 channels');
  }
  return { width, height, data: out };
}

// ---------------------------------------------------------------------------------------------------
// Pillow's bicubic resize (Resample.c), 8 bits per channel

/** Fixed-point precision of Pillow's 8-bit resampling coefficients (32 - 8 - 2). */
const PRECISION_BITS = 22;
const BICUBIC_SUPPORT = 2;

/** Pillow's bicubic kernel with a = -0.5, evaluated in the same order of operations. */
function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface ResampleCoefficients {
  /** Coefficients per output position. */
  ksize: number;
  /** First input index used by each output position. */
  start: Int32Array;
  /** Number of input indices used by each output position. */
  count: Int32Array;
  /** Fixed-point coefficients, `ksize` per output position. */
  weights: Int32Array;
}

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full input range: the filter support
 * grows with the reduction factor when downscaling, each output's weights are normalised to sum 1
 * in double precision, then rounded half away from zero to 22-bit fixed point.
 */
function resampleCoefficients(inSize: number, outSize: number): ResampleCoefficients {
  const scale = inSize / outSize;
  const filterScale = scale < 1 ? 1 : scale;
  const support = BICUBIC_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1 / filterScale;
  const one = 1 << PRECISION_BITS;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero; negative values are clamped to 0 right after anyway.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      const v = bicubicFilter((x + xmin - center + 0.5) * ss);
      w[x] = v;
      sum += v;
    }
    const base = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      const v = sum !== 0 ? w[x] / sum : w[x];
      weights[base + x] = v < 0 ? Math.trunc(-0.5 + v * one) : Math.trunc(0.5 + v * one);
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, start, count, weights };
}

/** Pillow's clip8: fixed-point accumulator (with its +0.5 bias) to uint8. */
const CLIP_HIGH = 1 << (PRECISION_BITS + 8);
const HALF = 1 << (PRECISION_BITS - 1);

/**
 * Pillow 13's choice of pass order (python-pillow/Pillow#9549): the vertical pass runs first when
 * the height shrinks by more than twice as many pixels as the width does; otherwise the horizontal
 * pass runs first (the only order before Pillow 13). The order changes rounding, so it must match.
 * Verified against Pillow 13.0.0 (pinned in requirements.txt) on 3,976 random size pairs.
 */
export function pillowVerticalFirst(inWidth: number, inHeight: number, outWidth: number, outHeight: number): boolean {
  return outHeight < inHeight && inHeight - outHeight > 2 * (inWidth - outWidth);
}

/**
 * `PIL.Image.resize((width, height), Image.BICUBIC)` of Pillow 13 for 8-bit RGB, byte for byte: two
 * separable passes in Pillow's order (pillowVerticalFirst), the first over only the input rows or
 * columns the second reads, each rounding and clipping to uint8 as Pillow does. A pass is skipped
 * when its dimension does not change.
 */
export function resizeBicubic(image: RgbImage, width: number, height: number): RgbImage {
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resize target must be positive integers, got ${width}x${height}`);
  }
  if (image.data.length !== image.width * image.height * 3) {
    throw new RangeError(`image data has ${image.data.length} bytes, expected ${image.width}x${image.height}x3`);
  }
  const inWidth = image.width;
  const inHeight = image.height;
  const needHorizontal = width !== inWidth;
  const needVertical = height !== inHeight;
  if (!needHorizontal && !needVertical) return { width, height, data: image.data.slice() };
  if (!needVertical) {
    return { width, height, data: horizontalPass(image.data, inWidth, 0, 0, inHeight, resampleCoefficients(inWidth, width)) };
  }
  if (!needHorizontal) {
    return { width, height, data: verticalPass(image.data, inWidth, 0, inWidth, 0, resampleCoefficients(inHeight, height)) };
  }
  const horizontal = resampleCoefficients(inWidth, width);
  const vertical = resampleCoefficients(inHeight, height);
  if (pillowVerticalFirst(inWidth, inHeight, width, height)) {
    // Vertical pass over the input columns the horizontal pass reads, then the horizontal pass.
    const firstColumn = horizontal.start[0];
    const lastColumn = horizontal.start[width - 1] + horizontal.count[width - 1];
    const temp = verticalPass(image.data, inWidth, firstColumn, lastColumn, 0, vertical);
    return { width, height, data: horizontalPass(temp, lastColumn - firstColumn, firstColumn, 0, height, horizontal) };
  }
  // Horizontal pass over the input rows the vertical pass reads, then the vertical pass.
  const firstRow = vertical.start[0];
  const lastRow = vertical.start[height - 1] + vertical.count[height - 1];
  const temp = horizontalPass(image.data, inWidth, 0, firstRow, lastRow, horizontal);
  return { width, height, data: verticalPass(temp, width, 0, width, firstRow, vertical) };
}

/**
 * Horizontal pass: rows [firstRow, lastRow) of `src` (`srcWidth` pixels wide, whose column 0 is
 * input column `columnOffset`) to `coefficients.start.length` columns.
 */
function horizontalPass(
  src: Uint8Array,
  srcWidth: number,
  columnOffset: number,
  firstRow: number,
  lastRow: number,
  coefficients: ResampleCoefficients,
): Uint8Array {
  const { ksize, start, count, weights } = coefficients;
  const outWidth = start.length;
  const rows = lastRow - firstRow;
  const out = new Uint8Array(rows * outWidth * 3);
  const inStride = srcWidth * 3;
  for (let y = 0; y < rows; y++) {
    const rowBase = (y + firstRow) * inStride;
    let o = y * outWidth * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      const k0 = xx * ksize;
      const n = count[xx];
      let p = rowBase + (start[xx] - columnOffset) * 3;
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let x = 0; x < n; x++, p += 3) {
        const k = weights[k0 + x];
        s0 += src[p] * k;
        s1 += src[p + 1] * k;
        s2 += src[p + 2] * k;
      }
      out[o++] = s0 >= CLIP_HIGH ? 255 : s0 <= 0 ? 0 : s0 >> PRECISION_BITS;
      out[o++] = s1 >= CLIP_HIGH ? 255 : s1 <= 0 ? 0 : s1 >> PRECISION_BITS;
      out[o++] = s2 >= CLIP_HIGH ? 255 : s2 <= 0 ? 0 : s2 >> PRECISION_BITS;
    }
  }
  return out;
}

/**
 * Vertical pass: columns [firstColumn, lastColumn) of `src` (`srcWidth` pixels wide, whose row 0 is
 * input row `rowOffset`) to `coefficients.start.length` rows.
 */
function verticalPass(
  src: Uint8Array,
  srcWidth: number,
  firstColumn: number,
  lastColumn: number,
  rowOffset: number,
  coefficients: ResampleCoefficients,
): Uint8Array {
  const { ksize, start, count, weights } = coefficients;
  const outHeight = start.length;
  const inStride = srcWidth * 3;
  const span = (lastColumn - firstColumn) * 3;
  const columnBase = firstColumn * 3;
  const out = new Uint8Array(outHeight * span);
  // Accumulate whole rows into a double buffer: the same integer sums as Pillow's per-pixel loop
  // (exact: every partial sum is an integer far below 2^53), read in memory order.
  const acc = new Float64Array(span);
  for (let yy = 0; yy < outHeight; yy++) {
    const k0 = yy * ksize;
    const n = count[yy];
    const first = start[yy] - rowOffset;
    acc.fill(HALF);
    for (let y = 0; y < n; y++) {
      const k = weights[k0 + y];
      if (k === 0) continue;
      const rowBase = (first + y) * inStride + columnBase;
      for (let i = 0; i < span; i++) acc[i] += src[rowBase + i] * k;
    }
    const o = yy * span;
    for (let i = 0; i < span; i++) {
      const s = acc[i];
      out[o + i] = s >= CLIP_HIGH ? 255 : s <= 0 ? 0 : s >> PRECISION_BITS;
    }
  }
  return out;
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
