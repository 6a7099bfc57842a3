"""A small Python runner for an exported model folder (onnxruntime), used by the parity tests, the
shared vectors and benchmarks to check the graphs against the PyTorch model.

It does what any loader of the onnx-community layout does: embed tokens, splice the vision
features into the `<|image_pad|>` positions, and run the decoder with an explicit KV cache. Position
ids come from the caller (the PyTorch reference computes them), so this checks the graphs, not a
second copy of the M-RoPE rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .export import GRAPHS, SUFFIX

_NP_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


class OnnxQwen2VL:
    def __init__(self, folder: str | Path, dtype: str = "fp32", threads: int = 1):
        folder = Path(folder)
        self.config = json.loads((folder / "config.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.sessions = {
            graph: ort.InferenceSession(str(folder / "onnx" / f"{graph}{SUFFIX[dtype]}.onnx"), options,
                                        providers=["CPUExecutionProvider"])
            for graph in GRAPHS
        }
        self.input_types = {
            graph: {i.name: _NP_DTYPES[i.type] for i in session.get_inputs()} for graph, session in self.sessions.items()
        }
        text = self.config["text_config"]
        self.num_layers = text["num_hidden_layers"]
        self.kv_heads = text["num_key_value_heads"]
        self.head_dim = text["hidden_size"] // text["num_attention_heads"]
        self.image_token_id = self.config["image_token_id"]

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        types = self.input_types[graph]
        return self.sessions[graph].run(None, {k: np.asarray(v).astype(types[k]) for k, v in feeds.items() if k in types})

    def embed(self, input_ids: np.ndarray) -> np.ndarray:
        return self._run("embed_tokens", {"input_ids": input_ids})[0]

    def encode_images(self, pixel_values: np.ndarray, grid_thw: np.ndarray) -> np.ndarray:
        return self._run("vision_encoder", {"pixel_values": pixel_values, "grid_thw": grid_thw})[0]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        dtype = self.input_types["decoder_model_merged"]["past_key_values.0.key"]
        return [np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=dtype) for _ in range(2 * self.num_layers)]

    def decode(self, inputs_embeds, attention_mask, position_ids, past, num_logits_to_keep: int = 0):
        feeds = {
            "inputs_embeds": inputs_embeds,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "num_logits_to_keep": np.array(num_logits_to_keep, dtype=np.int64),
        }
        for i in range(self.num_layers):
            feeds[f"past_key_values.{i}.key"] = past[2 * i]
            feeds[f"past_key_values.{i}.value"] = past[2 * i + 1]
        logits, *present = self._run("decoder_model_merged", feeds)
        return logits.astype(np.float32), present

    def prompt_embeds(self, input_ids: np.ndarray, pixel_values=None, grid_thw=None) -> np.ndarray:
        embeds = self.embed(input_ids)
        if pixel_values is not None:
            features = self.encode_images(pixel_values, grid_thw)
            mask = input_ids == self.image_token_id
            if int(mask.sum()) != features.shape[0]:
                raise ValueError(f"{int(mask.sum())} image tokens but {features.shape[0]} image features")
            embeds[mask] = features.astype(embeds.dtype)
        return embeds

    def greedy(self, input_ids, attention_mask, position_ids, max_new_tokens: int,
               pixel_values=None, grid_thw=None, vocab_limit: int | None = None) -> np.ndarray:
        """Greedy tokens for a (left-padded) batch, given the prompt's M-RoPE position ids."""
        batch = input_ids.shape[0]
        embeds = self.prompt_embeds(input_ids, pixel_values, grid_thw)
        logits, past = self.decode(embeds, attention_mask, position_ids, self.empty_past(batch), 1)
        # Each new token takes the next position after the row's largest (padding holds 0).
        next_pos = np.asarray(position_ids).max(axis=(0, 2)).astype(np.int64) + 1
        tokens = []
        mask = attention_mask
        for step in range(max_new_tokens):
            next_ids = logits[:, -1, :vocab_limit].argmax(axis=-1).astype(np.int64)
            tokens.append(next_ids)
            if step == max_new_tokens - 1:
                break
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
            position = np.broadcast_to((next_pos + step).reshape(1, batch, 1), (3, batch, 1))
            logits, past = self.decode(self.embed(next_ids[:, None]), mask, position, past, 1)
        return np.stack(tokens, axis=1)
