// Image bytes to 8-bit RGB pixels exactly as `PIL.Image.open(f).convert('RGB')` gives them
// (docs/preprocessing.md): the format is sniffed from the magic bytes (PNG, JPEG, WebP only) and
// the pixel count checked against the limit before any decoder runs; sharp decodes, with no
// resize, no colour management and no EXIF rotation; the conversion to RGB is ours.
//
// No onnxruntime, no HTTP: errors are EngineErrors with a `kind`.
import sharp from 'sharp';
import type { Metadata, OutputInfo, SharpOptions } from 'sharp';
import { EngineError } from '../errors';
import { holdsAscii, sniffImageFileFormat } from './format';

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
export type AcceptedImageFormat = 'png' | 'jpeg' | 'webp';

/**
 * The format named by the file's magic bytes (format.ts) when it is one the engine decodes, else
 * null. Checked before any decoder sees the bytes.
 */
export function sniffImageFormat(bytes: Uint8Array): AcceptedImageFormat | null {
  const format = sniffImageFileFormat(bytes);
  return format === 'png' || format === 'jpeg' || format === 'webp' ? format : null;
}

/** Width and height from a PNG's IHDR, read directly so that oversized declarations are refused
 * even where libpng itself would reject them with a generic error. */
function pngHeaderSize(bytes: Uint8Array): { width: number; height: number } | null {
  if (bytes.length < 24 || !holdsAscii(bytes, 'IHDR', 12)) return null;
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
  const sniffed = sniffImageFormat(bytes);
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
