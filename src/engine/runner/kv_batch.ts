// The KV cache of the running batch, in the decoder's own layout: per layer a key and a value
// tensor [B, kv_heads, P, head_dim], rows left-padded to a common past length P.
//
// Continuous batching changes the set of rows between steps: newly prefilled rows join (`merge`)
// and finished or cancelled rows leave (`remove`). Both rebuild the tensors once; steps in between
// feed the decoder's `present` outputs straight back as the next `past` (`advance`), with no copy.
import { Tensor, TensorData, TensorType } from '../onnx/ort';

export interface KvLayout {
  numLayers: number;
  kvHeads: number;
  headDim: number;
  type: TensorType; // float32 or float16
}

export class KvBatch {
  /** Row order = batch order. */
  readonly seqIds: number[];
  /** Left padding of each row: positions [0, pads[r]) of the past are not attended. */
  readonly pads: number[];
  pastLength: number;
  /** 2 * numLayers tensors: layer i key at 2i, value at 2i + 1. */
  past: Tensor[];
  private readonly layout: KvLayout;

  constructor(layout: KvLayout, seqIds: number[], pads: number[], pastLength: number, past: Tensor[]) {
    this.layout = layout;
    this.seqIds = seqIds;
    this.pads = pads;
    this.pastLength = pastLength;
    this.past = past;
  }

  static empty(layout: KvLayout): KvBatch {
    return new KvBatch(layout, [], [], 0, KvBatch.allocate(layout, 0, 0));
  }

  get size(): number {
    return this.seqIds.length;
  }

  /** Empty `past` inputs for a prefill of `batch` rows. */
  static emptyPast(layout: KvLayout, batch: number): Tensor[] {
    return KvBatch.allocate(layout, batch, 0);
  }

  /**
   * Row `row` of prefill `present` tensors [B, kv, S, d] without its `pad` positions of left
   * padding: per tensor [1, kv, S - pad, d], copied (the prompt cache's entry layout).
   */
  static rowOf(layout: KvLayout, present: Tensor[], row: number, pad: number): Tensor[] {
    const length = present[0].dims[2];
    const out = KvBatch.allocate(layout, 1, length - pad);
    for (let t = 0; t < out.length; t++) copyRow(layout, present[t], length, row, out[t], length - pad, 0, pad);
    return out;
  }

  /**
   * A batch of single-row KV caches (each [1, kv, L_i, d], as `rowOf` makes them), right-aligned to
   * the longest: one allocation, one copy per row. The inputs are only read.
   */
  static fromRows(layout: KvLayout, seqIds: number[], rows: Tensor[][]): KvBatch {
    const lengths = rows.map((r) => r[0].dims[2]);
    const length = Math.max(0, ...lengths);
    const past = KvBatch.allocate(layout, rows.length, length);
    for (let t = 0; t < past.length; t++) rows.forEach((r, dest) => copyRow(layout, r[t], lengths[dest], 0, past[t], length, dest, 0));
    return new KvBatch(layout, [...seqIds], lengths.map((l) => length - l), length, past);
  }

  /** Attention mask [B, P + newTokens]: 0 over each row's left padding, 1 elsewhere. */
  attentionMask(newTokens: number): Tensor {
    const width = this.pastLength + newTokens;
    const data = new BigInt64Array(this.size * width).fill(1n);
    for (let r = 0; r < this.size; r++) data.fill(0n, r * width, r * width + this.pads[r]);
    return { type: 'int64', data, dims: [this.size, width] };
  }

  /** After a decode run over every row: the presents become the past. */
  advance(present: Tensor[]): void {
    this.past = present;
    this.pastLength = present[0].dims[2];
  }

  /** Append `other`'s rows, right-aligning both to the longer past (more left padding). */
  merge(other: KvBatch): void {
    if (other.size === 0) return;
    if (this.size === 0) {
      this.seqIds.push(...other.seqIds);
      this.pads.push(...other.pads);
      this.pastLength = other.pastLength;
      this.past = other.past;
      return;
    }
    const length = Math.max(this.pastLength, other.pastLength);
    const rows = this.size + other.size;
    const merged = KvBatch.allocate(this.layout, rows, length);
    const sources: { batch: KvBatch; row: number }[] = [
      ...this.seqIds.map((_, row) => ({ batch: this as KvBatch, row })),
      ...other.seqIds.map((_, row) => ({ batch: other, row })),
    ];
    for (let t = 0; t < merged.length; t++) {
      sources.forEach(({ batch, row }, dest) => copyRow(this.layout, batch.past[t], batch.pastLength, row, merged[t], length, dest, 0));
    }
    const shiftThis = length - this.pastLength;
    const shiftOther = length - other.pastLength;
    for (let r = 0; r < this.pads.length; r++) this.pads[r] += shiftThis;
    this.seqIds.push(...other.seqIds);
    this.pads.push(...other.pads.map((p) => p + shiftOther));
    this.pastLength = length;
    this.past = merged;
  }

  /** Drop rows, then trim the left padding that every remaining row shares. */
  remove(seqIds: Iterable<number>): void {
    const drop = new Set(seqIds);
    const keep = this.seqIds.map((id, row) => ({ id, row })).filter(({ id }) => !drop.has(id));
    if (keep.length === this.size) return;
    const trim = keep.length ? Math.min(...keep.map(({ row }) => this.pads[row])) : this.pastLength;
    const length = this.pastLength - trim;
    const next = KvBatch.allocate(this.layout, keep.length, length);
    for (let t = 0; t < next.length; t++) {
      keep.forEach(({ row }, dest) => copyRow(this.layout, this.past[t], this.pastLength, row, next[t], length, dest, trim));
    }
    const pads = keep.map(({ row }) => this.pads[row] - trim);
    this.seqIds.splice(0, this.seqIds.length, ...keep.map(({ id }) => id));
    this.pads.splice(0, this.pads.length, ...pads);
    this.pastLength = length;
    this.past = next;
  }

  /** Bytes held by the cache (for metrics and memory budgets). */
  get bytes(): number {
    return this.past.reduce((sum, t) => sum + t.data.byteLength, 0);
  }

  private static allocate(layout: KvLayout, batch: number, length: number): Tensor[] {
    const dims = [batch, layout.kvHeads, length, layout.headDim];
    const size = batch * layout.kvHeads * length * layout.headDim;
    return Array.from({ length: 2 * layout.numLayers }, () =>
      layout.type === 'float16'
        ? ({ type: 'float16', data: new Uint16Array(size), dims } as Tensor)
        : ({ type: 'float32', data: new Float32Array(size), dims } as Tensor),
    );
  }
}

/**
 * Copy one row of a [B, kv, P, d] tensor into a row of a [B', kv, P', d] tensor, right-aligned:
 * source positions [skip, P) land at [P' - (P - skip), P').
 */
function copyRow(layout: KvLayout, src: Tensor, srcLength: number, srcRow: number, dst: Tensor, dstLength: number, dstRow: number, skip: number): void {
  const { kvHeads, headDim } = layout;
  const count = (srcLength - skip) * headDim;
  const offset = (dstLength - (srcLength - skip)) * headDim;
  const from = src.data as TensorData;
  const to = dst.data as TensorData;
  for (let h = 0; h < kvHeads; h++) {
    const s = ((srcRow * kvHeads + h) * srcLength + skip) * headDim;
    const d = (dstRow * kvHeads + h) * dstLength * headDim + offset;
    (to as Float32Array).set((from as Float32Array).subarray(s, s + count), d);
  }
}
