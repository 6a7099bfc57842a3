// The one image-format sniffer: the format an encoded image file names by its magic bytes. The
// engine decodes three of these formats (sniffImageFormat in decoding.ts); the benchmark loaders
// keep the other files they meet under the right extension (imageExtension in
// src/benchmarks/loaders/common.ts). No decoder, no sharp: only the leading bytes are read.

/** Every format recognised by its signature. */
export type ImageFileFormat = 'png' | 'jpeg' | 'webp' | 'gif' | 'bmp' | 'tiff';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(bytes: Uint8Array, prefix: readonly number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}

const ascii = (text: string): number[] => Array.from(text, (c) => c.charCodeAt(0));

/** Whether `bytes` holds `text`'s character codes at `at`. */
export function holdsAscii(bytes: Uint8Array, text: string, at = 0): boolean {
  return startsWith(bytes, ascii(text), at);
}

/** The format named by the file's magic bytes, or null when it is none of ImageFileFormat. */
export function sniffImageFileFormat(bytes: Uint8Array): ImageFileFormat | null {
  if (startsWith(bytes, PNG_SIGNATURE)) return 'png';
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (holdsAscii(bytes, 'RIFF') && holdsAscii(bytes, 'WEBP', 8)) return 'webp';
  if (holdsAscii(bytes, 'GIF87a') || holdsAscii(bytes, 'GIF89a')) return 'gif';
  if (holdsAscii(bytes, 'BM')) return 'bmp';
  if (holdsAscii(bytes, 'II*\0') || holdsAscii(bytes, 'MM\0*')) return 'tiff';
  return null;
}
