"""Vehicle detection: SSD MobileNetV2 COCO (TF model zoo, Apache-2.0) run batched in onnxruntime.

The bundled ONNX file (`lotlens/models/detector/`, made by `scripts/export_detector.py`) holds the
network with its anchors decoded: per image, 1,917 boxes and their vehicle-class scores. What TF's
graph and OpenCV DNN's DetectionOutput did after that, threshold and per-class NMS at IoU 0.6, is
done here in numpy, so that a batch is one onnxruntime call and the boxes match the OpenCV DNN
detector this replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lotlens.errors import ModelError
from lotlens.imaging import RGBArray
from lotlens.vision.backbone import MODEL_BATCH, session_options

# COCO ids as the TF object-detection graph numbers them (1-based, 90 ids); the ONNX file's
# `scores` columns are these classes in this order.
VEHICLE_CLASSES = {3: "car", 4: "motorcycle", 6: "bus", 8: "truck", 9: "boat"}
INPUT_SIDE = 300
NMS_IOU = 0.6
DETECTOR_FILE = "ssd_mobilenet_v2_coco.onnx"
DETECTOR_SHA256 = "0552a26fd1fd1c7d83fff30ba683af474276dbd757dc4ba43e67781173aa7db4"


@dataclass(frozen=True)
class Box:
    """A detection in pixel coordinates of the image it was found in."""

    label: str
    score: float
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)


def default_detector_path() -> Path:
    """The detector shipped inside the package."""
    return Path(str(resources.files("lotlens") / "models" / "detector" / DETECTOR_FILE))


def preprocess(images: Sequence[RGBArray], side: int = INPUT_SIDE) -> NDArray[np.uint8]:
    """Squash each RGB image to `side` x `side` (bilinear, as OpenCV's blobFromImage did), NHWC uint8."""
    import cv2

    return np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_LINEAR) for im in images])


def nms(boxes: NDArray[np.float32], scores: NDArray[np.float32], iou: float = NMS_IOU) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best score first.

    `boxes` are `ymin, xmin, ymax, xmax`; a box goes when it overlaps a kept better one by more
    than `iou` (intersection over union), as in OpenCV DNN's DetectionOutput.
    """
    order = list(np.argsort(-scores, kind="stable"))
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.asarray(order)
        ih = np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])
        iw = np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])
        inter = np.maximum(ih, 0) * np.maximum(iw, 0)
        union = area[i] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = [j for j, o in zip(order, overlap, strict=True) if o <= iou]
    return keep


class Detector:
    """Finds vehicles; `detect_many` returns, per image, boxes above `threshold`, biggest first.

    Boxes of equal size come likelier class first, as OpenCV DNN's score-sorted output gave them.
    """

    def __init__(
        self, session: object, classes: Sequence[str], threshold: float = 0.3, batch_size: int = MODEL_BATCH
    ) -> None:
        self._session = session
        self.classes = tuple(classes)
        self.threshold = threshold
        self.batch_size = batch_size

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        threshold: float = 0.3,
        threads: int = 0,
        batch_size: int = MODEL_BATCH,
        serving: bool = False,
    ) -> Detector:
        """Open the ONNX detector (the bundled one by default), refusing a file with another hash.

        Args:
            threads: onnxruntime intra-op threads; 0 lets onnxruntime use every core.
            batch_size: images per onnxruntime call (memory grows with it, speed does not on CPU).
            serving: set for a serving process (`backbone.session_options`).
        """
        import onnxruntime as ort

        path = path or default_detector_path()
        if not path.is_file():
            raise ModelError(f"detector file not found: {path}")
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != DETECTOR_SHA256:
            raise ModelError(f"{path}: sha256 {digest[:12]}..., expected {DETECTOR_SHA256[:12]}...")
        opts = session_options(threads, serving)
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        classes = session.get_modelmeta().custom_metadata_map.get("classes", "").split(",")
        if classes != [VEHICLE_CLASSES[k] for k in sorted(VEHICLE_CLASSES)]:
            raise ModelError(f"{path}: detector classes {classes}, expected {sorted(VEHICLE_CLASSES.values())}")
        return cls(session, classes, threshold, batch_size)

    def detect(self, image: RGBArray) -> list[Box]:
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[RGBArray]) -> list[list[Box]]:
        """Vehicle boxes per image, in order, batched `batch_size` images to an onnxruntime call."""
        out: list[list[Box]] = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i : i + self.batch_size]
            boxes, scores = self._session.run(None, {"image": preprocess(chunk)})  # type: ignore[attr-defined]
            out.extend(self._boxes(im, b, s) for im, b, s in zip(chunk, boxes, scores, strict=True))
        return out

    def _boxes(self, image: RGBArray, boxes: NDArray[np.float32], scores: NDArray[np.float32]) -> list[Box]:
        h, w = image.shape[:2]
        found = []
        for c, label in enumerate(self.classes):
            idx = np.flatnonzero(scores[:, c] >= self.threshold)
            if idx.size == 0:
                continue
            for k in nms(boxes[idx], scores[idx, c]):
                y0, x0, y1, x1 = np.clip(boxes[idx[k]], 0, 1)
                box = Box(label, float(scores[idx[k], c]), int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h))
                if box.area > 0:
                    found.append(box)
        # One anchor often scores as two classes (car and truck) with the same box: the likelier first.
        return sorted(found, key=lambda b: (b.area, b.score), reverse=True)
