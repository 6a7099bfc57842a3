import { syntheticSplit } from './src/benchmarks/spatial_synth';
for (const n of [1000, 20000]) { const t = Date.now(); const items = syntheticSplit('test', n, 1); console.log(n, items.length, Date.now() - t, 'ms'); }
