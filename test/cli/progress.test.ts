import { formatSeconds, progressBar } from '../../src/cli/progress';

function capture(isTTY: boolean) {
  const out: string[] = [];
  return { stream: { isTTY, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream, out };
}

describe('progress bar', () => {
  test('without a terminal it prints whole lines: the first update, then the last', () => {
    const { stream, out } = capture(false);
    const bar = progressBar('eval', 4, stream);
    bar.update(1);
    bar.update(2); // within 5 s of the last line: not printed
    bar.update(4, 'acc 0.50');
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(/^eval \[#{7}\.{21}\] {2}25\.0% 1\/4 [\d.]+\/s ETA \d+s\n$/);
    expect(out[1]).toMatch(/^eval \[#{28}\] 100\.0% 4\/4 .* ETA 0s {2}acc 0\.50\n$/);
  });

  test('on a terminal it redraws one line in place', () => {
    const { stream, out } = capture(true);
    const bar = progressBar('x', 2, stream);
    bar.update(1);
    bar.finish();
    expect(out[0].startsWith('\r')).toBe(true);
    expect(out.at(-1)).toMatch(/\n$/);
  });

  test('durations read as seconds, minutes or hours', () => {
    expect(formatSeconds(5)).toBe('5s');
    expect(formatSeconds(125)).toBe('2m05s');
    expect(formatSeconds(7260)).toBe('2h01m');
  });
});
