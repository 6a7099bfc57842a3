// Line charts (uPlot, served from node_modules by the service) of metrics against step, and
// grouped accuracy bars (plain elements). Each chart container says how many points it shows in
// data-points, and its newest step in data-last-step.
import { el, clear, percent } from './dom.js';

const uPlot = globalThis.uPlot;
export const PALETTE = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2', '#4b5563'];

function finite(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/**
 * A chart of `series` ({ label, key, color }) against `step` in `container`; returns
 * { setPoints(points), destroy() } where points are metric objects with a `step`.
 */
export function lineChart(container, { series, height = 200, yRange }) {
  clear(container);
  container.classList.add('chart');
  const width = () => Math.max(240, container.clientWidth || 400);
  const options = {
    width: width(),
    height,
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: false }, y: yRange ? { range: yRange } : { auto: true } },
    axes: [{ label: 'step', size: 40 }, { size: 56 }],
    series: [{ label: 'step' }, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: true, size: 4 }, spanGaps: true }))],
  };
  const plot = new uPlot(options, [[], ...series.map(() => [])], container);
  const resize = new ResizeObserver(() => plot.setSize({ width: width(), height }));
  resize.observe(container);
  container.dataset.points = '0';
  return {
    setPoints(points) {
      const sorted = [...points].sort((a, b) => a.step - b.step);
      const data = [sorted.map((p) => p.step), ...series.map((s) => sorted.map((p) => finite(p[s.key])))];
      plot.setData(data);
      container.dataset.points = String(sorted.length);
      container.dataset.lastStep = sorted.length ? String(sorted.at(-1).step) : '';
    },
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
  };
}

/**
 * Grouped horizontal bars: for each group (a task), one bar per run. `runs` are
 * { label, values: { [group]: { value, n } } }; values are fractions in [0, 1].
 */
export function groupedBars(container, { groups, runs }) {
  clear(container);
  container.classList.add('bars');
  const legend = el(
    'div',
    { class: 'bar-legend' },
    runs.map((run, i) => el('span', { class: 'legend-item' }, el('span', { class: `swatch c${i % PALETTE.length}` }), run.label)),
  );
  container.append(legend);
  for (const group of groups) {
    const rows = el('div', { class: 'bar-rows' });
    const block = el('div', { class: 'bar-group', dataset: { group } }, el('div', { class: 'bar-group-name' }, group), rows);
    runs.forEach((run, i) => {
      const entry = run.values[group];
      const fill = el('div', { class: `bar c${i % PALETTE.length}` });
      fill.style.width = entry ? `${Math.max(0, Math.min(1, entry.value)) * 100}%` : '0';
      rows.append(
        el(
          'div',
          { class: 'bar-row', title: run.label },
          el('div', { class: 'bar-track' }, fill),
          el('span', { class: 'bar-value' }, entry ? `${percent(entry.value)}${entry.n !== undefined ? ` (n=${entry.n})` : ''}` : 'n/a'),
        ),
      );
    });
    container.append(block);
  }
  container.dataset.bars = String(container.querySelectorAll('.bar').length);
}

/**
 * Curves of several runs against a shared x (pass@k against k, on a log2 axis): `series` are
 * { label, points: { [x]: y } } with y a fraction in [0, 1]; runs without a value at some x leave
 * a gap there. data-series says how many curves the chart holds, data-points how many x values.
 */
export function curvesChart(container, { series, xLabel, height = 220 }) {
  clear(container);
  container.classList.add('chart');
  const xs = [...new Set(series.flatMap((s) => Object.keys(s.points).map(Number)))].sort((a, b) => a - b);
  container.dataset.series = String(series.length);
  container.dataset.points = String(xs.length);
  if (!xs.length) {
    container.append(el('p', { class: 'meta' }, 'No finished run to plot.'));
    return;
  }
  const width = () => Math.max(240, container.clientWidth || 400);
  const options = {
    width: width(),
    height,
    legend: { live: true },
    scales: { x: { time: false, distr: 3, log: 2 }, y: { range: [0, 1] } },
    axes: [{ label: xLabel, size: 40, values: (_u, ticks) => ticks.map((t) => String(t)) }, { size: 56, values: (_u, ticks) => ticks.map((t) => percent(t, 0)) }],
    series: [
      { label: xLabel },
      ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: true, size: 6 }, spanGaps: true, value: (_u, v) => percent(v) })),
    ],
  };
  const data = [xs, ...series.map((s) => xs.map((x) => finite(s.points[x])))];
  const plot = new uPlot(options, data, container);
  const resize = new ResizeObserver(() => {
    if (!container.isConnected) {
      resize.disconnect();
      plot.destroy();
      return;
    }
    plot.setSize({ width: width(), height });
  });
  resize.observe(container);
}
