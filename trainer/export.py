"""Export a Hugging Face Qwen2-VL checkpoint folder to the onnx-community layout.

    python -m trainer.export --checkpoint DIR --out DIR [--dtype fp32 fp16 q8 q4]

Writes onnx/{embed_tokens,vision_encoder,decoder_model_merged}{suffix}.onnx (suffixes as
transformers.js names them: fp32 none, fp16 `_fp16`, q8 `_quantized`, q4 `_q4`), weights over
1.8 GB as `{file}.onnx_data`, and copies the JSON and tokenizer files, adding to config.json the flat
text fields and the `transformers.js_config` section that transformers.js reads. With --out equal
to --checkpoint the folder becomes both a checkpoint and a servable model (docs/architecture.md,
"A model folder").

The graphs come from torch.export (the dynamo exporter) of the wrappers in onnx_graphs.py with
every batch, sequence, past and image dimension dynamic. Variants other than fp32 are made from
the fp32 graphs with onnxruntime's tools: q8 = dynamic int8 quantization of MatMul/Gather weights,
q4 = block-wise int4 weights in MatMulNBits (block 32, symmetric); fp16 converts weights and I/O.
Graph inputs/outputs of q8 and q4 stay float32, as onnx-community keeps them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import onnx
import torch

from .onnx_graphs import Decoder, EmbedTokens, VisionEncoder

GRAPHS = ("embed_tokens", "vision_encoder", "decoder_model_merged")
SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "q4": "_q4"}
OPSET = 18
# Protobuf cannot hold a file over 2 GiB; stay well below it.
EXTERNAL_DATA_BYTES = 1_800_000_000
COPIED_FILES = (
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "README.md",
)
# Text fields transformers.js (and the onnx-community configs) read at the top level of config.json.
FLAT_TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "rms_norm_eps",
    "hidden_act",
)


def log(msg: str) -> None:
    print(f"[export] {msg}", file=sys.stderr, flush=True)


def _dummy_inputs(model) -> dict[str, tuple]:
    """Example inputs with distinct, non-trivial sizes (0 and 1 would be specialised by torch.export)."""
    text = model.config.text_config
    vision = model.config.vision_config
    head_dim = text.hidden_size // text.num_attention_heads
    batch, seq, past = 2, 5, 3
    patch_dim = 3 * vision.temporal_patch_size * vision.patch_size**2
    grid = torch.tensor([[1, 4, 6], [1, 2, 4]], dtype=torch.int64)
    n_patches = int(grid.prod(dim=1).sum())
    return {
        "embed_tokens": (torch.zeros(batch, seq, dtype=torch.int64),),
        "vision_encoder": (torch.randn(n_patches, patch_dim), grid),
        "decoder_model_merged": (
            torch.randn(batch, seq, text.hidden_size),
            torch.ones(batch, past + seq, dtype=torch.int64),
            torch.arange(past, past + seq).view(1, 1, seq).expand(3, batch, seq).contiguous(),
            torch.tensor(1, dtype=torch.int64),
            *[torch.randn(batch, text.num_key_value_heads, past, head_dim) for _ in range(2 * text.num_hidden_layers)],
        ),
    }


def _io_names(num_layers: int) -> dict[str, tuple[list[str], list[str]]]:
    past = [f"past_key_values.{i}.{kv}" for i in range(num_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(num_layers) for kv in ("key", "value")]
    return {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "vision_encoder": (["pixel_values", "grid_thw"], ["image_features"]),
        "decoder_model_merged": (
            ["inputs_embeds", "attention_mask", "position_ids", "num_logits_to_keep", *past],
            ["logits", *present],
        ),
    }


# Readable names for the dynamic dimensions, by tensor name and axis.
def _dim_names(num_layers: int) -> dict[str, dict[int, str]]:
    names = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
        "pixel_values": {0: "num_patches"},
        "grid_thw": {0: "num_images"},
        "image_features": {0: "num_image_tokens"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {1: "batch_size", 2: "sequence_length"},
        "logits": {0: "batch_size", 1: "num_logits"},
    }
    for i in range(num_layers):
        for kv in ("key", "value"):
            names[f"past_key_values.{i}.{kv}"] = {0: "batch_size", 2: "past_sequence_length"}
            names[f"present.{i}.{kv}"] = {0: "batch_size", 2: "total_sequence_length"}
    return names


def _dynamic_shapes(graph: str, num_layers: int):
    dyn = torch.export.Dim.DYNAMIC
    if graph == "embed_tokens":
        return ({0: dyn, 1: dyn},)
    if graph == "vision_encoder":
        return ({0: dyn}, {0: dyn})
    # One named length for every layer's past (and one batch, one sequence), so the graph computes
    # each shape once instead of once per layer: fewer nodes, and a decode step of a small model
    # costs about one kernel launch per node.
    batch, seq, past_len = (torch.export.Dim(name) for name in ("batch_size", "sequence_length", "past_sequence_length"))
    past = tuple({0: batch, 2: past_len} for _ in range(2 * num_layers))
    return ({0: batch, 1: seq}, {0: batch, 1: dyn}, {1: batch, 2: seq}, {}, past)


def _rename_dims(proto: onnx.ModelProto, names: dict[str, dict[int, str]]) -> None:
    for value in list(proto.graph.input) + list(proto.graph.output):
        for axis, name in names.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[axis]
            if not dim.HasField("dim_value"):
                dim.dim_param = name


def _strip_trace_metadata(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node stack traces: they hold absolute paths of the machine that
    exported, which would make the files differ between checkouts and leak local paths."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""


def save_onnx(proto: onnx.ModelProto, path: Path) -> bool:
    """Save, with weights in `{file}_data` beside it when they would not fit one protobuf."""
    size = sum(len(t.raw_data) for t in proto.graph.initializer)
    external = size > EXTERNAL_DATA_BYTES
    data_file = path.with_name(path.name + "_data")
    if data_file.exists():
        data_file.unlink()
    if external:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_file.name, size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))
    return external


def export_fp32(model, onnx_dir: Path) -> dict[str, bool]:
    """Export the three fp32 graphs; returns which ones use external data."""
    onnx_dir.mkdir(parents=True, exist_ok=True)
    num_layers = model.config.text_config.num_hidden_layers
    modules = {"embed_tokens": EmbedTokens(model), "vision_encoder": VisionEncoder(model), "decoder_model_merged": Decoder(model)}
    dummies = _dummy_inputs(model)
    io = _io_names(num_layers)
    external = {}
    for graph in GRAPHS:
        started = time.time()
        inputs, outputs = io[graph]
        program = torch.onnx.export(
            modules[graph].eval(),
            dummies[graph],
            dynamo=True,
            dynamic_shapes=_dynamic_shapes(graph, num_layers),
            input_names=inputs,
            output_names=outputs,
            opset_version=OPSET,
            verbose=False,
        )
        proto = program.model_proto
        _rename_dims(proto, _dim_names(num_layers))
        _strip_trace_metadata(proto)
        external[graph] = save_onnx(proto, onnx_dir / f"{graph}.onnx")
        del program, proto
        log(f"{graph}: fp32 in {time.time() - started:.1f}s")
    return external


def convert_fp16(src: Path, dst: Path) -> bool:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # The additive attention masks use -30000, representable in float16 (see onnx_graphs.py).
    converted = convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=True)
    _norms_by_reciprocal(converted)
    return save_onnx(converted, dst)


def _norms_by_reciprocal(proto: onnx.ModelProto) -> None:
    """Rewrite each RMSNorm's x / sqrt(v) as x * reciprocal(sqrt(v)), the form HF exports, which
    onnxruntime leaves unfused. In float16 its fused SimplifiedLayerNormalization on CPU is less
    accurate: max |logit diff| 0.0096 against 0.0005 unfused on the tiny test model."""
    sqrt_outputs = {node.output[0] for node in proto.graph.node if node.op_type == "Sqrt"}
    nodes = []
    for node in proto.graph.node:
        if node.op_type == "Div" and node.input[1] in sqrt_outputs:
            inverse = node.output[0] + "_reciprocal"
            nodes.append(onnx.helper.make_node("Reciprocal", [node.input[1]], [inverse], name=node.name + "_reciprocal"))
            nodes.append(onnx.helper.make_node("Mul", [node.input[0], inverse], list(node.output), name=node.name))
        else:
            nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def quantize_q8(src: Path, dst: Path) -> bool:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / dst.name
        quantize_dynamic(src, tmp_out, op_types_to_quantize=["MatMul", "Gather"], per_channel=False,
                         weight_type=QuantType.QInt8, use_external_data_format=True)
        return save_onnx(onnx.load(str(tmp_out)), dst)


def quantize_q4(src: Path, dst: Path, block_size: int = 32) -> bool:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=block_size, is_symmetric=True,
                                     op_types_to_quantize=("MatMul",))
    quantizer.process()
    return save_onnx(quantizer.model.model, dst)


CONVERTERS = {"fp16": convert_fp16, "q8": quantize_q8, "q4": quantize_q4}


def servable_config(config: dict, dtypes: list[str], external: dict[str, bool]) -> dict:
    """config.json plus what ONNX loaders read: flat text fields and transformers.js_config."""
    text = config.get("text_config", {})
    for field in FLAT_TEXT_FIELDS:
        if field in text:
            config.setdefault(field, text[field])
    rope = text.get("rope_parameters") or {}
    if "mrope_section" in rope:
        config.setdefault("rope_scaling", {"type": "mrope", "mrope_section": rope["mrope_section"]})
        config.setdefault("rope_theta", rope.get("rope_theta", 1_000_000.0))
    default = dtypes[0]
    js = {"dtype": {graph: default for graph in GRAPHS}}
    data_files = {name: 1 for name, is_external in external.items() if is_external}
    if data_files:
        js["use_external_data_format"] = data_files
    config["transformers.js_config"] = js
    return config


def export(checkpoint: Path, out: Path, dtypes: list[str]) -> Path:
    from transformers import Qwen2VLForConditionalGeneration

    unknown = [d for d in dtypes if d not in SUFFIX]
    if unknown or not dtypes:
        raise ValueError(f"unknown dtype(s) {unknown}; choose from {list(SUFFIX)}")
    out.mkdir(parents=True, exist_ok=True)
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(exist_ok=True)

    log(f"loading {checkpoint}")
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
    config = json.loads((checkpoint / "config.json").read_text())

    external: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        fp32_dir = onnx_dir if "fp32" in dtypes else Path(tmp)
        with torch.no_grad():
            fp32_external = export_fp32(model, fp32_dir)
        del model
        for graph in GRAPHS:
            src = fp32_dir / f"{graph}.onnx"
            if "fp32" in dtypes:
                external[src.name] = fp32_external[graph]
            for dtype in dtypes:
                if dtype == "fp32":
                    continue
                started = time.time()
                dst = onnx_dir / f"{graph}{SUFFIX[dtype]}.onnx"
                external[dst.name] = CONVERTERS[dtype](src, dst)
                log(f"{graph}: {dtype} in {time.time() - started:.1f}s")

    if checkpoint.resolve() != out.resolve():
        for name in COPIED_FILES:
            if (checkpoint / name).exists():
                shutil.copy2(checkpoint / name, out / name)
    (out / "config.json").write_text(json.dumps(servable_config(config, dtypes, external), indent=2) + "\n")
    log(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="Hugging Face model folder")
    parser.add_argument("--out", required=True, type=Path, help="output model folder (may equal --checkpoint)")
    parser.add_argument("--dtype", nargs="+", default=["fp32"], choices=list(SUFFIX),
                        help="variants to write; the first is the default in transformers.js_config")
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out, args.dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
