"""The int8 export against onnxruntime's own quantisation and the float model, one process.

    .venv/bin/python -m bench.export                       # MiniLM as tuned in var/nlu
    .venv/bin/python -m bench.export --model minilm --rounds 9
    .venv/bin/python -m bench.export --extra older=/tmp/encoder.int8.onnx

Each export encodes the held-out messages (tests/data/*_heldout.yml) through the
product's OnnxEncoder, one thread: every post alone, then all of them in length-sorted
runs of RUN_CHUNK, in alternating rounds. Reported: the median time per post over the
rounds, its ratio to onnxruntime's per-tensor export (median of the per-round ratios),
whether a post's vector is the same alone and in shuffled batches of 32, the cosine to
the float model (median and worst) and the graph's node count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
TUNED = ROOT / "var" / "nlu" / "encoder" / "part0" / "tuned"


def _texts() -> list[str]:
    from bot.nlu.data import load_test_data

    texts = {
        t
        for f in sorted((ROOT / "tests" / "data").glob("*_heldout.yml"))
        for t, _ in load_test_data(f)[1]
    }
    return sorted(texts)


def _build(model: Path, out: Path) -> dict[str, Path]:
    """float32, onnxruntime's dynamic int8 (one activation scale per run), and ours."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from bot.nlu.encoder import export_onnx
    from bot.nlu.onnx_quant import quantize_per_token

    fp32 = export_onnx(model, out, quantize=False)
    per_run = out / "per-run.onnx"
    quantize_dynamic(
        str(fp32), str(per_run), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
    )
    shipped = out / "shipped.onnx"
    quantize_per_token(fp32, shipped)
    return {"per run (onnxruntime)": per_run, "shipped": shipped, "float32": fp32}


def _nodes(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        default=str(TUNED) if TUNED.exists() else "minilm",
        help="encoder name or path (default: the tuned MiniLM in var/nlu)",
    )
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another exported ONNX file of the same model to compare",
    )
    args = ap.parse_args()

    from bot.nlu.encoder import RUN_CHUNK, OnnxEncoder, resolve_model

    extras: dict[str, Path] = {}
    for extra in args.extra:
        name, _, file = extra.partition("=")
        if not name or not Path(file).is_file():
            ap.error(f"--extra {extra!r}: give NAME=PATH of an exported .onnx file")
        extras[name] = Path(file)
    path, model_id = resolve_model(args.model)
    texts = _texts()
    with tempfile.TemporaryDirectory() as tmp:
        files = _build(Path(path), Path(tmp))
        files.update(extras)
        tok = Path(path) / "tokenizer.json"
        encs = {name: OnnxEncoder(f, tok, name) for name, f in files.items()}
        alone: dict[str, np.ndarray] = {}
        per_post: dict[str, list[float]] = {n: [] for n in encs}
        batched: dict[str, list[float]] = {n: [] for n in encs}
        with Progress() as bar:
            task = bar.add_task("rounds", total=args.rounds * len(encs))
            for _ in range(args.rounds):
                for name, enc in encs.items():
                    t = time.perf_counter()
                    alone[name] = np.vstack([enc.encode([x]) for x in texts])
                    per_post[name].append((time.perf_counter() - t) / len(texts) * 1e3)
                    t = time.perf_counter()
                    enc.encode(texts)
                    batched[name].append((time.perf_counter() - t) / len(texts) * 1e3)
                    bar.advance(task)
        rng = np.random.default_rng(0)
        rows = []
        base = "per run (onnxruntime)"
        for name, enc in encs.items():
            together = np.zeros_like(alone[name])
            same = True
            for _ in range(3):
                order = rng.permutation(len(texts))
                for s in range(0, len(order), 32):
                    idx = order[s : s + 32]
                    together[idx] = enc.encode([texts[i] for i in idx])
                same = same and bool(np.array_equal(together, alone[name]))
            cos = (alone[name] * alone["float32"]).sum(1)

            def ratio(series: dict[str, list[float]], n: str = name) -> float:
                return statistics.median(
                    a / b for a, b in zip(series[n], series[base], strict=True)
                )

            rows.append(
                f"| {name} | {_nodes(files[name])} | {statistics.median(per_post[name]):.2f} "
                f"({ratio(per_post):.3f}x) | {statistics.median(batched[name]):.2f} "
                f"({ratio(batched):.3f}x) | {'yes' if same else 'no'} | "
                f"{np.median(cos):.4f} / {cos.min():.4f} |"
            )
    print(f"{model_id}, {len(texts)} held-out messages, {args.rounds} alternating rounds\n")
    print(
        f"| export | graph nodes | ms per post alone | ms per post in runs of {RUN_CHUNK} "
        "| batch-invariant | cosine to float32, median / worst |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
