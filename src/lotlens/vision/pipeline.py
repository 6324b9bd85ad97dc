"""Type on the whole image; if not a placeholder, find the vehicle and tell its color.

The crop never feeds the type decision, so a placeholder showing several car silhouettes stays a
placeholder (the old system "rescued" such images into photos through their crops).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lotlens.errors import ModelError
from lotlens.imaging import RGBArray, crop, expand_box
from lotlens.labels import COLORS, PLACEHOLDER, TYPES
from lotlens.vision.backbone import FEATURES, MODEL_BATCH, Backbone
from lotlens.vision.detector import Detector
from lotlens.vision.heads import Head, LinearHead, read_head
from lotlens.vision.signals import (
    color_signals_many,
    region_statistics_many,
    small_copy,
    type_signals_many,
    white_background_boxes,
)

# 2: the type head may be a network (heads.MLPHead); format 1 folders (linear heads only) still load.
MODEL_FORMAT = 2
READABLE_FORMATS = (1, 2)
MODEL_FILE, HEADS_FILE, BACKBONE_FILE = "model.json", "heads.npz", "backbone.onnx"
CROP_MARGIN = 0.05
DEFAULT_PLACEHOLDER_THRESHOLD = 0.5
# The frame head: whether the vehicle fills the frame, read from the whole image's type features
# before the detector runs; where it says so, the detector is skipped and color reads the whole image.
FRAME_LABELS = ("partial", "fills")

Box = tuple[int, int, int, int]


def default_model_dir() -> Path:
    """The model folder shipped inside the package."""
    return Path(str(resources.files("lotlens") / "models" / "default"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Located:
    """Where the color model looks: a box (None = the whole image) and how it was found."""

    box: Box | None
    source: str  # "white_background" | "detector" | "frame" (the frame head: no detector run) | "none"
    n_vehicles: int = 0
    label: str | None = None  # the detector's class of the biggest vehicle: car, truck, bus, ...


@dataclass(frozen=True)
class Prediction:
    """One image's answer. `color` is None for placeholders, and then `color_scores` is empty."""

    type: str
    color: str | None
    type_scores: dict[str, float]
    color_scores: dict[str, float]
    box: Box | None
    box_source: str
    model_version: str
    vehicle: str | None = None  # the detector's class of the cropped vehicle, when the detector ran

    def stored_scores(self) -> dict[str, Any]:
        """What the store keeps beside the labels: both score sets and the vehicle kind."""
        return {"type": self.type_scores, "color": self.color_scores, "vehicle": self.vehicle}

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "color": self.color,
            "scores": {"type": self.type_scores, "color": self.color_scores},
            "box": list(self.box) if self.box else None,
            "box_source": self.box_source,
            "model_version": self.model_version,
            "vehicle": self.vehicle,
        }


class Featurizer:
    """The frozen parts: backbone, detector and signals. Training and serving share it."""

    def __init__(self, backbone: Backbone, detector: Detector, batch_size: int = MODEL_BATCH) -> None:
        self.backbone = backbone
        self.detector = detector
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, backbone_path: Path, threads: int = 0, batch_size: int = MODEL_BATCH, serving: bool = False
    ) -> Featurizer:
        """Open the backbone and the detector; both run `threads` onnxruntime intra-op threads (0: all cores).

        `serving=True` sets onnxruntime for a process running several calls at once, for long:
        no spinning threads, one shared memory arena (`backbone.session_options`).

        OpenCV runs single-threaded: its calls here (resizes, color conversions, histograms) are small
        and per image, and its own thread pool would compete with onnxruntime and the service's workers
        for the same cores. For the same reason a serving process runs numpy's BLAS on one thread: the
        network type head's product (a call's rows x 320 hidden units) is big enough for OpenBLAS to
        wake its threads, whose spinning cost the service 7 ms of CPU an image (`bench_service.py`:
        cold_cpu_ms_per_image 31.5 against 24.1). Training keeps BLAS's threads for its fits.
        """
        import cv2

        cv2.setNumThreads(1)
        if serving:
            from threadpoolctl import threadpool_limits

            threadpool_limits(1, user_api="blas")
        detector = Detector.load(threads=threads, batch_size=batch_size, serving=serving)
        return cls(Backbone.load(backbone_path, threads, serving), detector, batch_size)

    def type_features(
        self,
        images: Sequence[RGBArray],
        embeddings: NDArray[np.float32] | None = None,
        smalls: Sequence[RGBArray | None] | None = None,
    ) -> NDArray[np.float32]:
        """Whole-image embedding and type signals; `embeddings`: the backbone rows, if already made;
        `smalls`: each image's `small_copy`, if already made."""
        emb = self.backbone.embed(images, self.batch_size) if embeddings is None else embeddings
        return np.hstack([emb, type_signals_many(images, smalls)]).astype(np.float32)

    def locate(self, image: RGBArray) -> Located:
        """The biggest vehicle's box with a margin; the non-white extent for studio shots on white."""
        return self.locate_many([image])[0]

    def locate_many(
        self,
        images: Sequence[RGBArray],
        fills: Sequence[bool] | None = None,
        smalls: Sequence[RGBArray | None] | None = None,
    ) -> list[Located]:
        """`locate` for each image, in order, with one batched detector pass over those not on white.

        Args:
            fills: per image, True when the frame head says the vehicle fills the frame: the detector
                is skipped and color reads the whole image (source "frame"). Studio shots on white
                are still cut to their white-background box.
            smalls: per image, its `small_copy` if already made, else None.
        """
        located: list[Located | None] = []
        for n, (image, box) in enumerate(zip(images, white_background_boxes(images, smalls), strict=True)):
            h, w = image.shape[:2]
            if box is not None:
                located.append(Located(expand_box(box, CROP_MARGIN, w, h), "white_background", 1))
            else:
                located.append(Located(None, "frame") if fills is not None and fills[n] else None)
        todo = [i for i, loc in enumerate(located) if loc is None]
        for i, boxes in zip(todo, self.detector.detect_many([images[i] for i in todo]), strict=True):
            h, w = images[i].shape[:2]
            located[i] = (
                Located(expand_box(boxes[0].as_tuple(), CROP_MARGIN, w, h), "detector", len(boxes), boxes[0].label)
                if boxes
                else Located(None, "none", 0)
            )
        return [loc for loc in located if loc is not None]

    def color_features(
        self,
        crops: Sequence[RGBArray],
        regions: Sequence[str] = (),
        embeddings: Sequence[NDArray[np.float32] | None] | None = None,
        smalls: Sequence[RGBArray | None] | None = None,
    ) -> NDArray[np.float32]:
        """Crop embedding and color histograms, then the statistics of each of `regions` (in order).

        Args:
            embeddings: per crop, its backbone row when already computed (a crop that is the whole
                image has the whole image's row), else None; only the missing rows are computed.
            smalls: per crop, its `small_copy` when already made (a crop that is the whole image has
                the whole image's), else None.
        """
        known = list(embeddings) if embeddings is not None else [None] * len(crops)
        if len(known) != len(crops):
            raise ValueError(f"{len(crops)} crops but {len(known)} embeddings")
        todo = [i for i, row in enumerate(known) if row is None]
        emb = np.zeros((len(crops), FEATURES), dtype=np.float32)
        for i, row in zip(todo, self.backbone.embed([crops[i] for i in todo], self.batch_size), strict=True):
            emb[i] = row
        for i, row in enumerate(known):
            if row is not None:
                emb[i] = row
        small = _smalls(crops, smalls)
        return np.hstack([emb, color_signals_many(small), region_statistics_many(small, tuple(regions))]).astype(
            np.float32
        )


def _smalls(images: Sequence[RGBArray], smalls: Sequence[RGBArray | None] | None) -> list[RGBArray]:
    """Each image's `small_copy`: the one given, else made now."""
    given = list(smalls) if smalls is not None else [None] * len(images)
    return [small_copy(im) if sm is None else sm for im, sm in zip(images, given, strict=True)]


def decide_types(probs: NDArray[np.float32], placeholder_threshold: float) -> list[int]:
    """Type index per row: Placeholder from `placeholder_threshold` up, else the likelier photo type.

    A threshold under 0.5 trades some photo accuracy for placeholder recall, the costlier error.
    """
    p_idx = TYPES.index(PLACEHOLDER)
    photo = [i for i in range(len(TYPES)) if i != p_idx]
    return [p_idx if row[p_idx] >= placeholder_threshold else photo[int(np.argmax(row[photo]))] for row in probs]


def crop_to(image: RGBArray, located: Located) -> RGBArray:
    return image if located.box is None else crop(image, located.box)


def is_whole(crop_: RGBArray, image: RGBArray) -> bool:
    """Whether `crop_` (made by `crop_to` from `image`) holds every pixel of `image`."""
    return crop_.shape == image.shape


@dataclass
class ModelFolder:
    """What a model folder holds: metadata (model.json) and the two heads (heads.npz)."""

    meta: dict[str, Any]
    type_head: Head
    color_head: LinearHead
    path: Path | None = None
    frame_head: LinearHead | None = None  # older models have none: the detector runs on every photo

    @property
    def frame_threshold(self) -> float:
        """The frame head's probability of "fills" from which the detector is skipped."""
        return float(self.meta.get("decision", {}).get("frame_threshold", 1.0))

    def fills(self, type_features: NDArray[np.float32]) -> list[bool]:
        """Per row of type features: whether the frame head says the vehicle fills the frame."""
        if self.frame_head is None or len(type_features) == 0:
            return [False] * len(type_features)
        p = self.frame_head.predict_proba(type_features)[:, FRAME_LABELS.index("fills")]
        return [bool(v >= self.frame_threshold) for v in p]

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def placeholder_threshold(self) -> float:
        return float(self.meta.get("decision", {}).get("placeholder_threshold", DEFAULT_PLACEHOLDER_THRESHOLD))

    @property
    def color_regions(self) -> tuple[str, ...]:
        """The crop regions whose statistics follow the color histograms (none in older models)."""
        return tuple(self.meta.get("features", {}).get("color_regions", ()))

    @classmethod
    def read(cls, path: Path) -> ModelFolder:
        meta_path, heads_path = path / MODEL_FILE, path / HEADS_FILE
        if not meta_path.is_file() or not heads_path.is_file():
            raise ModelError(f"{path} is not a model folder (needs {MODEL_FILE} and {HEADS_FILE})")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") not in READABLE_FORMATS:
            readable = ", ".join(map(str, READABLE_FORMATS))
            raise ModelError(f"{path}: model format {meta.get('format')!r}, this lotlens reads {readable}")
        labels = meta["labels"]
        if tuple(labels["type"]) != TYPES or tuple(labels["color"]) != COLORS:
            raise ModelError(f"{path}: label sets differ from this lotlens's")
        with np.load(heads_path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        temperature = float(meta.get("decision", {}).get("color_temperature", 1.0))
        color_head = replace(LinearHead.from_arrays("color", COLORS, arrays), temperature=temperature)
        frame_head = LinearHead.from_arrays("frame", FRAME_LABELS, arrays) if "frame_coef" in arrays else None
        return cls(meta, read_head("type", TYPES, arrays), color_head, path, frame_head)

    def write(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = self.type_head.to_arrays("type") | self.color_head.to_arrays("color")
        if self.frame_head is not None:
            arrays |= self.frame_head.to_arrays("frame")
        np.savez(path / HEADS_FILE, **arrays)
        # The color head's temperature lives in model.json, beside the other decision settings.
        decision = {**self.meta.get("decision", {}), "color_temperature": self.color_head.temperature}
        self.meta = {**self.meta, "decision": decision}
        (path / MODEL_FILE).write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n")
        self.path = path

    def backbone_path(self) -> Path:
        """The backbone next to the heads, else the bundled one (checked by hash)."""
        want = self.meta["preprocessing"]["backbone"]["sha256"]
        for candidate in ([self.path / BACKBONE_FILE] if self.path else []) + [default_model_dir() / BACKBONE_FILE]:
            if candidate.is_file() and sha256_file(candidate) == want:
                return candidate
        raise ModelError(f"no backbone with sha256 {want[:12]}... next to the model or bundled")


class Pipeline:
    """The loaded model. Build it with `Pipeline.load()`; `classify` takes decoded RGB arrays."""

    def __init__(self, folder: ModelFolder, featurizer: Featurizer) -> None:
        self.folder = folder
        self.featurizer = featurizer

    @property
    def version(self) -> str:
        return self.folder.version

    @classmethod
    def load(
        cls, model_dir: Path | None = None, threads: int = 0, batch_size: int = MODEL_BATCH, serving: bool = False
    ) -> Pipeline:
        """Read the model folder (the bundled one by default) and open its onnxruntime sessions.

        Args:
            threads: onnxruntime intra-op threads per call (0: all cores).
            batch_size: images per onnxruntime call (`MODEL_BATCH`); callers may pass more at once.
            serving: set for a serving process (see `Featurizer.load`).
        """
        folder = ModelFolder.read(model_dir or default_model_dir())
        return cls(folder, Featurizer.load(folder.backbone_path(), threads, batch_size, serving))

    def predict_types(self, type_features: NDArray[np.float32]) -> tuple[list[str], NDArray[np.float32]]:
        """Type labels and probabilities."""
        probs = self.folder.type_head.predict_proba(type_features)
        return [TYPES[i] for i in decide_types(probs, self.folder.placeholder_threshold)], probs

    def classify(
        self, images: Sequence[RGBArray], with_color: Sequence[bool] | None = None, frame_gate: bool = True
    ) -> list[Prediction]:
        """Classify a batch of decoded images, in order.

        Args:
            with_color: per image, False skips the crop and color (the caller already knows the
                color); the answer then has no color and no color scores.
            frame_gate: where the model has a frame head, skip the detector on the photos it says the
                vehicle fills (False: the detector runs on every photo not on white, the reference).
        """
        if not images:
            return []
        fz = self.featurizer
        whole = fz.backbone.embed(images, fz.batch_size)
        smalls = [small_copy(im) for im in images]  # read by the type, white-field and color signals
        type_x = fz.type_features(images, whole, smalls)
        types, type_probs = self.predict_types(type_x)
        todo = [i for i, t in enumerate(types) if t != PLACEHOLDER and (with_color is None or with_color[i])]
        fills = self.folder.fills(type_x[todo]) if frame_gate else None
        found = fz.locate_many([images[i] for i in todo], fills, [smalls[i] for i in todo])
        located = dict(zip(todo, found, strict=True))
        color_probs = {}
        if todo:
            crops = [crop_to(images[i], located[i]) for i in todo]
            # A crop that is the whole image (the vehicle fills the frame, or nothing was found) has
            # the whole image's embedding and small copy: the backbone runs again only on real crops.
            whole_crop = [is_whole(c, images[i]) for i, c in zip(todo, crops, strict=True)]
            reuse = [whole[i] if w else None for i, w in zip(todo, whole_crop, strict=True)]
            small = [smalls[i] if w else None for i, w in zip(todo, whole_crop, strict=True)]
            x = fz.color_features(crops, self.folder.color_regions, reuse, small)
            probs = self.folder.color_head.predict_proba(x)
            color_probs = dict(zip(todo, probs, strict=True))
        out = []
        for i, t in enumerate(types):
            tp = {k: round(float(v), 4) for k, v in zip(TYPES, type_probs[i], strict=True)}
            if i in color_probs:
                cp = color_probs[i]
                loc = located[i]
                out.append(
                    Prediction(
                        t,
                        COLORS[int(cp.argmax())],
                        tp,
                        {k: round(float(v), 4) for k, v in zip(COLORS, cp, strict=True)},
                        loc.box,
                        loc.source,
                        self.version,
                        loc.label,
                    )
                )
            else:
                out.append(Prediction(t, None, tp, {}, None, "none", self.version))
        return out
