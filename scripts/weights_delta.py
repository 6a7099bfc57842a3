"""Moves fine-tuned weights off a machine in half the bytes: the difference to the base model, in fp16.

    python3 scripts/weights_delta.py pack BASE_DIR MODEL_DIR OUT.safetensors
    python3 scripts/weights_delta.py unpack BASE_DIR OUT.safetensors MODEL_DIR

The GPU machine returns at most 64 MB of files per call (docs/embedded-model.md), and a fine-tuned
nano model differs from its base by updates far smaller than the weights themselves: fp16 keeps
such a difference to about 1e-3 of itself, so base + difference reproduces the fp32 weights to
within about 1e-3 of what fine-tuning changed (`unpack` prints the largest rounding error it could
have made). Used by scripts/gpu_session.sh; the other files of MODEL_DIR (config, tokenizer) are
packed beside the delta by the caller.
"""

import sys
from pathlib import Path

from safetensors.torch import load_file, save_file


def pack(base: Path, model: Path, out: Path) -> None:
    a, b = load_file(base / "model.safetensors"), load_file(model / "model.safetensors")
    if a.keys() != b.keys():
        raise SystemExit(f"{model} and {base} hold different tensors")
    delta = {k: (b[k].float() - a[k].float()).half() for k in b}
    bound = max(float((b[k].float() - a[k].float() - delta[k].float()).abs().max()) for k in b)
    save_file(delta, str(out), metadata={"max_rounding_error": f"{bound:.3e}"})


def unpack(base: Path, packed: Path, model: Path) -> None:
    a, delta = load_file(base / "model.safetensors"), load_file(packed)
    model.mkdir(parents=True, exist_ok=True)
    save_file({k: (a[k].float() + delta[k].float()).to(a[k].dtype).contiguous() for k in a},
              str(model / "model.safetensors"), metadata={"format": "pt"})
    from safetensors import safe_open

    with safe_open(str(packed), "pt") as f:
        print(f"{model}: rebuilt from {base} + {packed.name} (max rounding error "
              f"{(f.metadata() or {}).get('max_rounding_error', '?')})", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    verb, x, y, z = sys.argv[1:]
    if verb == "pack":
        pack(Path(x), Path(y), Path(z))
    else:
        unpack(Path(x), Path(y), Path(z))
