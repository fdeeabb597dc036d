"""Per-token int8 quantisation of an ONNX graph (bot/nlu/onnx_quant.py) on a small model:
two linear layers with a ReLU between them, the shape of a transformer's feed-forward
block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from bot.nlu.onnx_quant import quantize_per_token

K, H, N = 64, 96, 48


def _float_model(path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.normal(size=(K, H)) / 8).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=H).astype(np.float32), "b1")
    w2 = numpy_helper.from_array((rng.normal(size=(H, N)) / 10).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", N])],
        [w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_a_row_quantised_alone_or_beside_a_loud_row_gives_the_same_output(
    tmp_path: Path,
) -> None:
    """Per-token scales: a post's rows come out the same whatever shares its run, even a
    row a hundred times louder, and stay close to the float model. One scale per tensor
    (onnxruntime's quantize_dynamic) fails the first check."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, pt, dyn = tmp_path / "f.onnx", tmp_path / "pt.onnx", tmp_path / "dyn.onnx"
    _float_model(fp32)
    quantize_per_token(fp32, pt)
    quantize_dynamic(str(fp32), str(dyn), weight_type=QuantType.QInt8, per_channel=True)
    assert not list(tmp_path.glob("*.per-tensor.onnx"))  # its scratch file is gone

    rng = np.random.default_rng(1)
    post = rng.normal(size=(1, 5, K)).astype(np.float32)
    loud = 100 * rng.normal(size=(1, 5, K)).astype(np.float32)
    batch = np.concatenate([post, loud])

    alone, together = _run(pt, post)[0], _run(pt, batch)[0]
    assert np.abs(alone - together).max() < 1e-5
    dyn_alone, dyn_together = _run(dyn, post)[0], _run(dyn, batch)[0]
    assert np.abs(dyn_alone - dyn_together).max() > 1e-2  # what the rewrite removes

    exact = _run(fp32, post)[0]
    cos = (alone * exact).sum(1) / np.linalg.norm(alone, axis=1) / np.linalg.norm(exact, axis=1)
    assert cos.min() > 0.99, cos
    # A row with no spread at all (every value 0) quantises without dividing by zero:
    # the first layer's output is then its bias alone.
    zeros = np.zeros((1, 2, K), np.float32)
    assert np.abs(_run(pt, zeros) - _run(fp32, zeros)).max() < 0.05


def _three_heads(path: Path, shared: bool) -> None:
    """Three MatMuls on one input, as attention's query, key and value are; with
    ``shared`` False each reads its own Identity copy of it (the same values)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    weights = [
        numpy_helper.from_array((rng.normal(size=(K, N)) / 8).astype(np.float32), f"w{i}")
        for i in range(3)
    ]
    nodes = [] if shared else [helper.make_node("Identity", ["x"], [f"x{i}"]) for i in range(3)]
    nodes += [
        helper.make_node("MatMul", ["x" if shared else f"x{i}", f"w{i}"], [f"y{i}"])
        for i in range(3)
    ]
    graph = helper.make_graph(
        nodes,
        "heads",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(3)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_matmuls_on_one_input_run_as_one_product_with_the_same_results(tmp_path: Path) -> None:
    """Query, key and value share one integer product on their weights side by side;
    every output value is the one three separate products give."""
    for shared in (True, False):
        _three_heads(tmp_path / f"f{shared}.onnx", shared)
        quantize_per_token(tmp_path / f"f{shared}.onnx", tmp_path / f"q{shared}.onnx")
    merged = onnx.load(str(tmp_path / "qTrue.onnx"))
    apart = onnx.load(str(tmp_path / "qFalse.onnx"))
    assert [n.op_type for n in merged.graph.node].count("MatMulInteger") == 1
    assert [n.op_type for n in apart.graph.node].count("MatMulInteger") == 3

    x = np.random.default_rng(3).normal(size=(2, 7, K)).astype(np.float32)
    sessions = [
        ort.InferenceSession(
            str(tmp_path / f"{kind}{shared}.onnx"), providers=["CPUExecutionProvider"]
        )
        for kind, shared in (("q", True), ("q", False), ("f", True))
    ]
    one, three, exact = (s.run(None, {"x": x}) for s in sessions)
    for a, b, f in zip(one, three, exact, strict=True):
        assert np.array_equal(a, b)
        assert np.abs(a - f).max() < 0.05 * np.abs(f).max()
