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

Opset 21's blocked QuantizeLinear takes each row's scale and zero point without
reshaping, and the MatMuls that read one input (attention's query, key and value) share
one integer product on their weights side by side. The values are bit for bit those of
the first version of this rewrite (recipe onnx-int8-pt), from a quarter fewer graph
nodes. What remains costs about 1.17x onnxruntime's per-run export's time per post
(bench/export.py; 1.34x with the first version, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

LEVELS = 255.0  # uint8 activations
OPSET = 21  # blocked QuantizeLinear


def quantize_per_token(fp32: Path, out: Path) -> None:
    """Write ``out``: ``fp32`` with int8 weights (per channel) and per-token activations."""
    import onnx
    from onnx import version_converter
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
        # Opset 21 for blocked QuantizeLinear: one scale per row without reshaping.
        model = version_converter.convert_version(onnx.load(str(per_tensor)), OPSET)
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
    last = const("pt/last", np.array([-1], np.int64))

    nodes: list[Any] = []
    row_zero: dict[str, tuple[str, str]] = {}  # zero point -> row scales, zero points
    for n in graph.node:
        if n.op_type != "DynamicQuantizeLinear":
            nodes.append(n)
            continue
        # Tensor names are unique (node names may be empty): new names derive from them.
        x, (q, scale, zp), p = n.input[0], n.output, n.output[0]
        width = {inits[m.input[1]].dims[0] for m in consumers[q] if m.op_type == "MatMulInteger"}
        if len(width) != 1:
            raise ValueError(f"unexpected quantised graph around {p}")
        # The range of each row (last axis) holds 0, as the per-tensor op's does, and is
        # never empty (eps). Blocked QuantizeLinear (opset 21) takes the [..., 1] scales
        # and zero points as they are, one block per row.
        nodes += [
            helper.make_node("ReduceMax", [x, last], [f"{p}/max"], keepdims=1),
            helper.make_node("ReduceMin", [x, last], [f"{p}/min"], keepdims=1),
            helper.make_node("Max", [f"{p}/max", eps], [f"{p}/hi"]),
            helper.make_node("Min", [f"{p}/min", zero], [f"{p}/lo"]),
            helper.make_node("Sub", [f"{p}/hi", f"{p}/lo"], [f"{p}/range"]),
            helper.make_node("Div", [f"{p}/range", top], [scale]),
            helper.make_node("Neg", [f"{p}/lo"], [f"{p}/-lo"]),
            # z = round(-lo / s) as uint8
            helper.make_node(
                "QuantizeLinear", [f"{p}/-lo", scale], [f"{p}/z8"], axis=-1, block_size=1
            ),
            helper.make_node(
                "QuantizeLinear", [x, scale, f"{p}/z8"], [q], axis=-1, block_size=width.pop()
            ),
            helper.make_node("Cast", [f"{p}/z8"], [f"{p}/z"], to=TensorProto.FLOAT),
        ]
        row_zero[zp] = (scale, f"{p}/z")

    # The MatMulIntegers reading one quantised input (attention's query, key and value)
    # become one, on their weights side by side, split after scaling: one product and
    # one correction instead of three, and every output value is computed as before.
    producer = {o: m for m in graph.node for o in m.output}
    groups: dict[str, list[Any]] = {}
    for n in nodes:
        if n.op_type == "MatMulInteger" and n.input[2] in row_zero:
            groups.setdefault(n.input[0], []).append(n)
    dropped: set[int] = set()  # the nodes the new ones replace (by id)
    out: list[Any] = []
    for n in nodes:
        group = groups.pop(n.input[0], None) if n.op_type == "MatMulInteger" else None
        if group is None:
            out.append(n)
            continue
        chains = [_chain(m, consumers, producer, inits) for m in group]
        a_scale, z = row_zero[n.input[2]]
        if any(len(m.input) < 4 or m.input[2] != n.input[2] for m in group) or any(
            scales.input[0] != a_scale for _, _, scales in chains
        ):
            raise ValueError(f"unexpected quantised graph around {n.output[0]}")
        dropped.update(id(x) for m, chain in zip(group, chains, strict=True) for x in (m, *chain))
        w8 = np.concatenate([numpy_helper.to_array(inits[m.input[1]]) for m in group], 1)
        w_zp = np.concatenate([numpy_helper.to_array(inits[m.input[3]]) for m in group])
        w_scale = np.concatenate([numpy_helper.to_array(inits[c[2].input[1]]) for c in chains])
        w = w8.astype(np.int64) - w_zp.astype(np.int64)
        p = n.output[0]
        # q = round(x / s) + z, so (q - z) W = q W - z * colsum(W): zero point 0 in the
        # integer product, the row's z times each column's sum taken off as floats.
        out += [
            helper.make_node(
                "MatMulInteger",
                [n.input[0], const(f"{p}/w", w8), zp0, const(f"{p}/w_zp", w_zp)],
                [f"{p}/int"],
            ),
            helper.make_node("Cast", [f"{p}/int"], [f"{p}/float"], to=TensorProto.FLOAT),
            helper.make_node(
                "Mul", [z, const(f"{p}/colsum", w.sum(0).astype(np.float32))], [f"{p}/offset"]
            ),
            helper.make_node("Sub", [f"{p}/float", f"{p}/offset"], [f"{p}/exact"]),
            helper.make_node("Mul", [a_scale, const(f"{p}/w_scale", w_scale)], [f"{p}/scales"]),
        ]
        results = [mul.output[0] for _, mul, _ in chains]
        if len(group) == 1:
            out.append(helper.make_node("Mul", [f"{p}/exact", f"{p}/scales"], results))
        else:
            sizes = np.array([inits[m.input[1]].dims[1] for m in group], np.int64)
            out += [
                helper.make_node("Mul", [f"{p}/exact", f"{p}/scales"], [f"{p}/all"]),
                helper.make_node(
                    "Split", [f"{p}/all", const(f"{p}/sizes", sizes)], results, axis=-1
                ),
            ]
    del graph.node[:]
    graph.node.extend(m for m in out if id(m) not in dropped)
    used = {name for m in graph.node for name in m.input}
    kept = [i for i in graph.initializer if i.name in used]  # the merged weights' parts go
    del graph.initializer[:]
    graph.initializer.extend(kept + [i for i in added if i.name in used])
    # Without shapes onnxruntime infers its own, and makes fewer fusions: with the shapes
    # onnx infers kept, it fused more and ran 1.15-1.3x slower on MiniLM.
    del graph.value_info[:]


def _chain(
    mm: Any, consumers: dict[str, list[Any]], producer: dict[str, Any], inits: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """The Cast, the Mul and its scales (Mul of activation and weight scales) that turn
    ``mm``'s int32 product into floats, as quantize_dynamic writes them."""
    cast = _only_user(consumers, mm.output[0], "Cast")
    mul = _only_user(consumers, cast.output[0], "Mul")
    scales = producer.get(mul.input[1])
    if (
        mm.input[1] not in inits
        or scales is None
        or scales.op_type != "Mul"
        or scales.input[1] not in inits
        or len(consumers[scales.output[0]]) != 1
    ):
        raise ValueError(f"unexpected quantised graph around {mm.output[0]}")
    return cast, mul, scales


def _only_user(consumers: dict[str, list[Any]], tensor: str, op: str) -> Any:
    users = consumers.get(tensor, [])
    if len(users) != 1 or users[0].op_type != op:
        raise ValueError(f"unexpected quantised graph around {tensor}: expected one {op}")
    return users[0]
