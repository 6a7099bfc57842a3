"""Export wrappers: the three onnx-community Qwen2-VL graphs as torch modules around HF's modules.

Each wrapper reuses the Hugging Face submodules (and so their weights) of a loaded
`Qwen2VLForConditionalGeneration`, and recomputes with tensor operations only the parts HF computes
with Python loops or `.tolist()` (vision position ids, per-image attention split, the causal mask,
the KV cache), since tracing would freeze those to the dummy input's shapes (docs/export.md, "Graphs").
The decoder's attention and norms, and the vision patch embedding, are HF's arithmetic written in
fewer graph nodes (a small model's decode step costs about one kernel launch per node).

Graph interfaces (docs/export.md, "Graphs"):
  embed_tokens          input_ids [B,S] int64                       -> inputs_embeds [B,S,H]
  vision_encoder        pixel_values [N,1176], grid_thw [I,3] int64 -> image_features [N/4,H]
  decoder_model_merged  inputs_embeds [B,S,H], attention_mask [B,P+S] int64, position_ids [3,B,S] int64,
                        past_key_values.{i}.key/.value [B,kv,P,d], num_logits_to_keep [] int64
                        -> logits [B,K,V], present.{i}.key/.value [B,kv,P+S,d]
`num_logits_to_keep` is our optional extra input (transformers.js feature-detects it): 0 keeps all
S positions, k > 0 the last k. Loaders without it see a graph that still accepts the standard inputs
by name.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

# Additive bias for disallowed attention: large enough that exp() underflows to 0 next to any real
# score, and finite in float16 so the fp16 variant never turns a fully masked (padding) row to NaN.
MASK_VALUE = -30000.0


class EmbedTokens(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.embed = model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids)


def vision_patch_positions(grid_thw: torch.Tensor, num_patches: int | torch.SymInt, merge: int):
    """Per patch: (row, col) inside its image, and the index of the first patch of its frame.

    Patches are laid out image after image, frame after frame, and inside a frame in
    merge x merge blocks taken row-major, each block row-major (the processor's patch order).
    """
    t, h, w = grid_thw[:, 0], grid_thw[:, 1], grid_thw[:, 2]
    per_frame = h * w
    counts = t * per_frame
    ends = torch.cumsum(counts, dim=0)
    starts = ends - counts
    p = torch.arange(num_patches, device=grid_thw.device, dtype=grid_thw.dtype)
    image = (p[:, None] >= ends[None, :]).to(grid_thw.dtype).sum(dim=1)
    local = p - starts[image]
    frame_size = per_frame[image]
    in_frame = local % frame_size
    frame_start = p - in_frame
    blocks_per_row = w[image] // merge
    block, within = in_frame // (merge * merge), in_frame % (merge * merge)
    row = (block // blocks_per_row) * merge + within // merge
    col = (block % blocks_per_row) * merge + within % merge
    return row, col, frame_start


class VisionEncoder(nn.Module):
    """HF's vision tower for any number of images, each frame attending only to itself."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.visual = model.model.visual
        self.merge = model.config.vision_config.spatial_merge_size

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        visual = self.visual
        # The patch embedding is a Conv3d whose kernel equals its stride, so over flattened patches it
        # is one matrix product; onnxruntime's 3-D Conv took a third of this graph's time.
        proj = visual.patch_embed.proj
        patches = pixel_values.to(proj.weight.dtype) @ proj.weight.reshape(proj.out_channels, -1).t()
        if proj.bias is not None:
            patches = patches + proj.bias
        row, col, frame_start = vision_patch_positions(grid_thw, patches.shape[0], self.merge)
        cos, sin = visual.rotary_pos_emb(patches, torch.stack([row, col], dim=-1))
        same_frame = frame_start[:, None] == frame_start[None, :]
        bias = torch.zeros(same_frame.shape, dtype=patches.dtype, device=patches.device)
        bias = bias.masked_fill(~same_frame, MASK_VALUE)
        # A leading axis of 1 keeps every Linear 3-D, so it exports as MatMul (which the q8/q4
        # quantizers handle) rather than Gemm.
        hidden = patches[None]
        for block in visual.blocks:
            hidden = hidden + self._attention(block.attn, block.norm1(hidden), cos, sin, bias)
            hidden = hidden + block.mlp(block.norm2(hidden))
        merger = visual.merger
        merged = merger.mlp(merger.ln_q(hidden).reshape(1, -1, merger.hidden_size))
        return merged[0]

    @staticmethod
    def _attention(attn: nn.Module, x: torch.Tensor, cos, sin, bias: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        q, k, v = attn.qkv(x).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [heads, n, d]
        scores = torch.matmul(q, k.transpose(1, 2)) * attn.scaling + bias
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return attn.proj(out.transpose(0, 1).reshape(1, n, -1))


def rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """HF's RMSNorm written with a division: x / sqrt(mean(x^2) + eps) * weight.

    HF multiplies by rsqrt, which exports as Sqrt, Reciprocal, Mul; onnxruntime's load-time
    optimizer fuses this form (Pow, ReduceMean, Add, Sqrt, Div, Mul) into one
    SimplifiedLayerNormalization node. (On the CPU it leaves the residual Add before it alone;
    fusing the two into SkipSimplifiedLayerNormalization by hand made a nano decode step no faster.)
    """
    x32 = x.float()
    variance = x32.pow(2).mean(-1, keepdim=True)
    return norm.weight * (x32 / torch.sqrt(variance + norm.variance_epsilon)).to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, HF's x cos + rotate_half(x) sin with rotate_half(x) = (-x2, x1): here
    (x2, x1) times a sine whose first half is negated once for all layers (`signed_sin`)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((x2, x1), dim=-1) * signed_sin


class Decoder(nn.Module):
    """HF's language model + LM head with an explicit KV cache in and out (prefill and decode).

    Same weights and arithmetic as HF's modules, written for a small graph, since a decode step of a
    small model costs about one kernel launch per node (docs/export.md, "Graphs"): the q, k and v
    projections as one MatMul, the rotary embedding applied to queries and keys together, the
    key/value heads shared by their query groups without copying them, RMSNorm in a form
    onnxruntime fuses.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.lm = model.model.language_model
        self.lm_head = model.lm_head
        cfg = model.config.text_config
        self.num_layers = cfg.num_hidden_layers
        self.kv_heads = cfg.num_key_value_heads
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.qkv = nn.ModuleList(self._fused_qkv(layer.self_attn) for layer in self.lm.layers)

    @staticmethod
    def _fused_qkv(attn: nn.Module) -> nn.Linear:
        """q, k and v as one Linear (Qwen2-VL's three projections all have biases)."""
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        weight = torch.cat([p.weight for p in projections]).detach()
        fused = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device)
        fused.weight = nn.Parameter(weight, requires_grad=False)
        fused.bias = nn.Parameter(torch.cat([p.bias for p in projections]).detach(), requires_grad=False)
        return fused

    def forward(self, inputs_embeds, attention_mask, position_ids, num_logits_to_keep, *past):
        seq = inputs_embeds.shape[1]
        past_len = past[0].shape[2]
        total = past_len + seq
        dtype = inputs_embeds.dtype

        # Causal over absolute positions, and no key that the attention mask marks as padding.
        key_pos = torch.arange(total, device=inputs_embeds.device)
        query_pos = torch.arange(seq, device=inputs_embeds.device) + past_len
        allowed = (key_pos[None, :] <= query_pos[:, None])[None, None] & (attention_mask[:, None, None, :] > 0)
        bias = torch.zeros(allowed.shape, dtype=dtype, device=inputs_embeds.device)
        # [B, 1, 1, S, P+S]: broadcast over key/value heads and the query heads of each group.
        bias = bias.masked_fill(~allowed, MASK_VALUE)[:, :, None]

        cos, sin = self.lm.rotary_emb(inputs_embeds, position_ids)
        half = sin.shape[-1] // 2
        sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, S, d]: broadcast over heads
        hidden = inputs_embeds
        presents = []
        for i, layer in enumerate(self.lm.layers):
            attn_out, key, value = self._attention(
                i, layer.self_attn, rms_norm(layer.input_layernorm, hidden), cos, sin, bias, past[2 * i], past[2 * i + 1]
            )
            presents += [key, value]
            hidden = hidden + attn_out
            hidden = hidden + layer.mlp(rms_norm(layer.post_attention_layernorm, hidden))
        hidden = rms_norm(self.lm.norm, hidden)

        keep = num_logits_to_keep.item()
        torch._check(keep >= 0)
        torch._check(keep <= seq)
        # (seq - keep) % seq is seq - keep for 1 <= keep <= seq and 0 for keep == 0 (all positions).
        start = (seq - keep) % seq
        logits = self.lm_head(hidden[:, start:, :])
        return (logits, *presents)

    def _attention(self, i, attn, x, cos, sin, bias, past_key, past_value):
        batch, seq = x.shape[0], x.shape[1]
        heads, kv, d = self.heads, self.kv_heads, self.head_dim
        qkv = self.qkv[i](x).view(batch, seq, heads + 2 * kv, d).transpose(1, 2)
        qk, v = qkv.split([heads + kv, kv], dim=1)
        q, k = rotate(qk, cos, sin).split([heads, kv], dim=1)
        key = torch.cat([past_key, k], dim=2)
        value = torch.cat([past_value, v], dim=2)
        # Grouped-query attention: query head g * rep + r reads key/value head g. The rep query heads
        # of a group are stacked as rows of one matrix against their group's keys, so the keys and
        # values are never repeated (HF's repeat_kv copies them rep times per layer and step).
        rep = heads // kv
        total = key.shape[2]
        scores = torch.matmul(q.reshape(batch, kv, rep * seq, d), key.transpose(2, 3)) * attn.scaling
        scores = scores.view(batch, kv, rep, seq, total) + bias
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype).view(batch, kv, rep * seq, total)
        out = torch.matmul(probs, value).view(batch, heads, seq, d).transpose(1, 2).reshape(batch, seq, -1)
        return attn.o_proj(out), key, value
