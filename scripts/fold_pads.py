"""Fold the backbone's explicit zero `Pad` nodes into the convolutions that read them.

`scripts/export_backbone.py` rebuilds EfficientNet-Lite0 with TF "SAME" padding, which torch can only
express as an `F.pad` before each strided convolution; the ONNX export keeps those as `Pad` nodes
(with their pad amounts computed by a small constant subgraph each). onnxruntime runs its fast
blocked-layout convolutions (NCHWc) on everything but a `Pad`, so each of the five pads cost a copy
back to plain NCHW, the pad itself, and a copy back: a quarter of the backbone's time on one core.
An ONNX `Conv` takes asymmetric `pads` itself, so the same zeros can be added there: the outputs stay
bit-identical (checked here on random inputs) and the backbone runs about 20% faster.

    python scripts/fold_pads.py src/lotlens/models/default/backbone.onnx   # in place
    python scripts/fold_pads.py IN.onnx --out OUT.onnx

Needs `onnx` (in the `export` extra) and onnxruntime. After folding the bundled file, update its
sha256 in NOTICE and in the bundled model.json (`preprocessing.backbone.sha256`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _pad_amounts(model: Any, names: list[str]) -> dict[str, list[int]]:
    """The values of the `names` tensors (constants of the graph), by running it once."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    first = model.graph.input[0]
    shape = [d.dim_value or 1 for d in first.type.tensor_type.shape.dim]
    values = session.run(names, {first.name: np.zeros(shape, np.float32)})
    return {n: [int(v) for v in np.asarray(a).ravel()] for n, a in zip(names, values, strict=True)}


def fold_pads(model: Any) -> Any:
    """`model` with each zero, constant-mode `Pad` of H and W folded into the one `Conv` reading it.

    Raises:
        ValueError: a `Pad` that cannot be folded (another mode or value, padding of N or C, read by
            something else than one convolution).
    """
    import onnx
    from onnx import helper

    graph = model.graph
    pads = [n for n in graph.node if n.op_type == "Pad"]
    amounts = _pad_amounts(model, [p.input[1] for p in pads])
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for pad in pads:
        mode = next((helper.get_attribute_value(a) for a in pad.attribute if a.name == "mode"), b"constant")
        n0, c0, h0, w0, n1, c1, h1, w1 = amounts[pad.input[1]]
        users = readers.get(pad.output[0], [])
        if mode != b"constant" or (len(pad.input) > 2 and pad.input[2]) or n0 or c0 or n1 or c1:
            raise ValueError(f"{pad.name}: not a zero padding of H and W only")
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != pad.output[0]:
            raise ValueError(f"{pad.name}: read by {[u.op_type for u in users]}, not by one Conv")
        conv = users[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        if attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
            raise ValueError(f"{conv.name}: auto_pad {attrs['auto_pad']!r}")
        t0, l0, b0, r0 = attrs.get("pads", [0, 0, 0, 0])
        for a in [a for a in conv.attribute if a.name == "pads"]:
            conv.attribute.remove(a)
        conv.attribute.append(helper.make_attribute("pads", [t0 + h0, l0 + w0, b0 + h1, r0 + w1]))
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
    # What computed the pad amounts is read by nothing now: keep only what the outputs need.
    needed = {o.name for o in graph.output}
    nodes = list(graph.node)
    keep = set()
    for i in reversed(range(len(nodes))):  # the nodes are in topological order
        if any(o in needed for o in nodes[i].output):
            keep.add(i)
            needed.update(name for name in nodes[i].input if name)
    kept = [onnx.NodeProto.FromString(n.SerializeToString()) for i, n in enumerate(nodes) if i in keep]
    del graph.node[:]
    graph.node.extend(kept)
    for init in [i for i in graph.initializer if i.name not in needed]:
        graph.initializer.remove(init)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def same_outputs(before: bytes, after: bytes, side: int = 224, seed: int = 0) -> bool:
    """Whether both models give bit-identical outputs on a batch of random images."""
    import onnxruntime as ort

    x = np.random.default_rng(seed).uniform(-1, 1, (4, 3, side, side)).astype(np.float32)
    outs = [
        ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0] for m in (before, after)
    ]
    return bool(np.array_equal(outs[0], outs[1]))


def main() -> int:
    import onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, help="where to write (default: in place)")
    args = ap.parse_args()
    before = args.model.read_bytes()
    model = onnx.load_from_string(before)
    count = sum(n.op_type == "Pad" for n in model.graph.node)
    after = fold_pads(model).SerializeToString()
    if not same_outputs(before, after):
        sys.exit("the folded model's outputs differ: not written")
    (args.out or args.model).write_bytes(after)
    sys.stdout.write(f"folded {count} pads; wrote {args.out or args.model} ({len(after) / 1e6:.1f} MB)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
