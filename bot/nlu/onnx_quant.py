"""int8 quantisation of an exported encoder, with one activation scale per token.

onnxruntime's dynamic quantisation gives each MatMul input one scale for the whole tensor,
taken from its largest activation in the run. A post's vector then depends on the posts
it is batched with (their tokens and padding widen the range): on our held-out posts,
cosine 0.95-1.00 between a post encoded alone and in a batch, and 4 % of them changed a
decision (intent, FAQ, tone). Here each token row gets its own scale and zero point, so a
post's vector is the same in any batch, and a reused vector equals a fresh one.

The rewrite keeps onnxruntime's integer MatMul: q = round(x / s) + z per row (uint8),
MatMulInteger(q, W) with zero point 0, then the row's z times each weight column's sum is
subtracted, which is what a per-row zero point would have taken off. Weights keep one
scale per output channel, 7-bit: without VNNI (AVX2 here) the uint8 x int8 kernel adds
pairs of products in int16, and full-range rows with 8-bit weights overflow it (cosine to
the float model fell to 0.972; 0.997 with 7-bit weights, docs/benchmarks.md).

The price is about 400 more small graph nodes per run: a post encoded alone costs 17 %
more CPU; in batches, service throughput is 0.97x (docs/benchmarks.md, session 23).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

LEVELS = 255.0  # uint8 activations


def quantize_per_token(fp32: Path, out: Path) -> None:
    """Write ``out``: ``fp32`` with int8 weights (per channel) and per-token activations."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    per_tensor = out.with_suffix(".per-tensor.onnx")
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic warns about pre-processing
    try:
        quantize_dynamic(
            str(fp32),
            str(per_tensor),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
        model = onnx.load(str(per_tensor))
    finally:
        logging.getLogger().setLevel(level)
        per_tensor.unlink(missing_ok=True)
    _per_token(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def _per_token(graph: Any) -> None:
    """Replace every DynamicQuantizeLinear and rewire the MatMulIntegers it feeds."""
    from onnx import TensorProto, helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    added: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        added.append(numpy_helper.from_array(value, name))
        return name

    eps = const("pt/eps", np.array(1e-8, np.float32))
    zero = const("pt/zero", np.array(0.0, np.float32))
    top = const("pt/levels", np.array(LEVELS, np.float32))
    zp0 = const("pt/zp0", np.array(0, np.uint8))
    flat = const("pt/flat", np.array([-1], np.int64))

    nodes: list[Any] = []
    row_zero: dict[str, str] = {}  # old tensor zero point -> the row zero points (float)
    for n in graph.node:
        if n.op_type != "DynamicQuantizeLinear":
            nodes.append(n)
            continue
        # Tensor names are unique (node names may be empty): new names derive from them.
        x, (q, scale, zp), p = n.input[0], n.output, n.output[0]
        width = {inits[m.input[1]].dims[0] for m in consumers[q] if m.op_type == "MatMulInteger"}
        if len(width) != 1:
            raise ValueError(f"unexpected quantised graph around {p}")
        rows = const(f"{p}/rows", np.array([-1, width.pop()], np.int64))
        # The range of each row (last axis), widened to hold 0 as the per-tensor op does.
        # QuantizeLinear takes one scale per row of a 2-D tensor, so the rows are flattened.
        nodes += [
            helper.make_node("ReduceMax", [x], [f"{p}/max"], axes=[-1], keepdims=1),
            helper.make_node("ReduceMin", [x], [f"{p}/min"], axes=[-1], keepdims=1),
            helper.make_node("Max", [f"{p}/max", zero], [f"{p}/hi"]),
            helper.make_node("Min", [f"{p}/min", zero], [f"{p}/lo"]),
            helper.make_node("Sub", [f"{p}/hi", f"{p}/lo"], [f"{p}/range"]),
            helper.make_node("Max", [f"{p}/range", eps], [f"{p}/range+"]),
            helper.make_node("Div", [f"{p}/range+", top], [scale]),
            helper.make_node("Div", [f"{p}/lo", scale], [f"{p}/lo_q"]),
            helper.make_node("Neg", [f"{p}/lo_q"], [f"{p}/z_raw"]),
            helper.make_node("Round", [f"{p}/z_raw"], [f"{p}/z"]),
            helper.make_node("Cast", [f"{p}/z"], [f"{p}/z8"], to=TensorProto.UINT8),
            helper.make_node("Reshape", [scale, flat], [f"{p}/scale_rows"]),
            helper.make_node("Reshape", [f"{p}/z8", flat], [f"{p}/z_rows"]),
            helper.make_node("Shape", [x], [f"{p}/shape"]),
            helper.make_node("Reshape", [x, rows], [f"{p}/x_rows"]),
            helper.make_node(
                "QuantizeLinear",
                [f"{p}/x_rows", f"{p}/scale_rows", f"{p}/z_rows"],
                [f"{p}/q_rows"],
                axis=0,
            ),
            helper.make_node("Reshape", [f"{p}/q_rows", f"{p}/shape"], [q]),
        ]
        row_zero[zp] = f"{p}/z"

    # A MatMulInteger fed a per-row zero point: zero point 0, then subtract z * colsum(W).
    # Its int32 output went to one Cast to float, which the corrected float replaces.
    dropped: set[str] = set()  # outputs of the Casts the corrected floats replace
    out: list[Any] = []
    for n in nodes:
        if n.op_type != "MatMulInteger" or n.input[2] not in row_zero:
            out.append(n)
            continue
        z = row_zero[n.input[2]]
        users = consumers[n.output[0]]
        if len(users) != 1 or users[0].op_type != "Cast" or n.input[1] not in inits:
            raise ValueError(f"unexpected quantised graph around {n.output[0]}")
        cast = users[0]
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.int64)
        if len(n.input) > 3 and n.input[3]:
            w = w - numpy_helper.to_array(inits[n.input[3]]).astype(np.int64)
        raw = p = n.output[0]
        colsum = const(f"{p}/colsum", w.sum(0).astype(np.float32))
        n.input[2] = zp0
        dropped.add(cast.output[0])
        out += [
            n,
            helper.make_node("Cast", [raw], [f"{p}/float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [z, colsum], [f"{p}/offset"]),
            helper.make_node("Sub", [f"{p}/float", f"{p}/offset"], [cast.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(m for m in out if not (m.op_type == "Cast" and m.output[0] in dropped))
    graph.initializer.extend(added)
    del graph.value_info[:]  # shapes of rewired tensors changed; onnxruntime infers them
