// A progress bar for long CLI work on stderr: done/total, rate, ETA. Redraws in place on a
// terminal; prints a line every few seconds otherwise (logs, CI).

export interface ProgressBar {
  update(done: number, extra?: string): void;
  finish(extra?: string): void;
}

export function progressBar(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  const started = Date.now();
  const tty = Boolean(stream.isTTY);
  let lastPrint = 0;
  let lastDone = -1;
  let printedDone = -1;

  const render = (done: number, extra = '') => {
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 && total > done ? Math.round((total - done) / rate) : 0;
    const width = 28;
    const filled = total > 0 ? Math.round((width * Math.min(done, total)) / total) : 0;
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    const pct = total > 0 ? ((100 * done) / total).toFixed(1).padStart(5) : '  ?  ';
    return `${label} [${bar}] ${pct}% ${done}/${total} ${rate.toFixed(1)}/s ETA ${formatSeconds(eta)}${extra ? `  ${extra}` : ''}`;
  };

  return {
    update(done, extra) {
      if (done === lastDone && !extra) return;
      lastDone = done;
      const now = Date.now();
      if (tty) {
        stream.write(`\r${render(done, extra)}\x1b[K`);
      } else if (now - lastPrint > 5000 || done === total) {
        lastPrint = now;
        printedDone = done;
        stream.write(`${render(done, extra)}\n`);
      }
    },
    finish(extra) {
      // Without a terminal, a final line already printed at 100% is not repeated.
      if (!tty && !extra && printedDone === total) return;
      stream.write(`${tty ? '\r' : ''}${render(lastDone < 0 ? total : Math.max(lastDone, 0), extra)}${tty ? '\x1b[K' : ''}\n`);
    },
  };
}

export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(rest).padStart(2, '0')}s` : `${rest}s`;
}
