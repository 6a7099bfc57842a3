"""The memory bandwidth onnxruntime reaches on this machine: a graph that sums a 1 GiB float32
tensor (a ReduceSum over a weight, as a decode step reads the weights), timed with the given
number of intra-op threads. Prints GB/s (bytes read). Used by bench/generation.ts for the decode
roofline.

    .venv/bin/python bench/membw.py [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    n = args.mib * 1024 * 1024 // 4
    weight = numpy_helper.from_array(np.ones((n // 1024, 1024), dtype=np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["w"], ["s"], keepdims=0), helper.make_node("Add", ["s", "x"], ["y"])],
        "membw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "membw.onnx"
        onnx.save_model(model, str(path), save_as_external_data=True, location="membw.data")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        # No constant folding: the sum must be computed at every run.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = np.zeros((), dtype=np.float32)
        session.run(None, {"x": x})
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            session.run(None, {"x": x})
            best = min(best, time.perf_counter() - started)
    print(f"{n * 4 / best / 1e9:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
