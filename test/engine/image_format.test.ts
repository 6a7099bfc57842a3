// The one image-format sniffer (src/engine/images/format.ts) and its two users: the engine, which
// decodes PNG, JPEG and WebP only (sniffImageFormat), and the benchmark loaders, which keep every
// file they meet under the extension of its format (imageExtension: `prepare` names image files
// with it, the dashboard's item images get their media type from it).
import sharp from 'sharp';
import { imageExtension } from '../../src/benchmarks/loaders';
import { sniffImageFormat } from '../../src/engine/images/decoding';
import { sniffImageFileFormat } from '../../src/engine/images/format';
import { imageType } from '../../src/server/routes/evaluate';

const encoded = (format: 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff') =>
  sharp({ create: { width: 6, height: 4, channels: 3, background: { r: 10, g: 120, b: 240 } } }).toFormat(format).toBuffer();
const BMP = Buffer.concat([Buffer.from('BM'), Buffer.alloc(60)]);

describe('image formats by their signature', () => {
  test.each([
    ['png', 'png', 'png', 'image/png'],
    ['jpeg', 'jpeg', 'jpg', 'image/jpeg'],
    ['webp', 'webp', 'webp', 'image/webp'],
    ['gif', null, 'gif', 'image/gif'],
    ['tiff', null, 'tiff', 'application/octet-stream'],
  ] as const)('a %s file: the engine decodes it as %s, the loaders store it as .%s, the dashboard serves it as %s', async (format, engine, extension, type) => {
    const bytes = await encoded(format);
    expect(sniffImageFileFormat(bytes)).toBe(format);
    expect(sniffImageFormat(bytes)).toBe(engine);
    expect(imageExtension(bytes)).toBe(extension);
    expect(imageType(bytes)).toBe(type);
  });

  test('BMP and big-endian TIFF by their headers; short, empty and unknown bytes are no format anywhere', () => {
    expect([sniffImageFileFormat(BMP), sniffImageFormat(BMP), imageExtension(BMP)]).toEqual(['bmp', null, 'bmp']);
    const bigEndianTiff = Buffer.concat([Buffer.from('MM\0*', 'latin1'), Buffer.alloc(12)]);
    expect(imageExtension(bigEndianTiff)).toBe('tiff');
    expect(imageExtension(Buffer.from('GIF88a', 'latin1'))).toBeNull();
    for (const bytes of [Buffer.alloc(0), Buffer.from([0x89, 0x50, 0x4e]), Buffer.from([0xff, 0xd8]), Buffer.from('RIFF0000WAVE', 'latin1'), Buffer.from('<svg/>')]) {
      expect([sniffImageFileFormat(bytes), sniffImageFormat(bytes), imageExtension(bytes), imageType(bytes)]).toEqual([null, null, null, 'application/octet-stream']);
    }
  });

  test('the signature is read where the bytes start, also inside a larger buffer', async () => {
    const png = await encoded('png');
    const pool = Buffer.concat([Buffer.from('junk'), png]);
    const view = pool.subarray(4);
    expect([sniffImageFormat(view), imageExtension(view)]).toEqual(['png', 'png']);
    expect(imageExtension(new Uint8Array(view))).toBe('png');
  });
});
