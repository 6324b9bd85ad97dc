"""EfficientNet-Lite0 image embeddings through onnxruntime (no torch at serving time)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lotlens.errors import ModelError
from lotlens.imaging import RGBArray, resize

INPUT_SIDE = 224
FEATURES = 1280


def preprocess(images: Sequence[RGBArray], side: int = INPUT_SIDE) -> NDArray[np.float32]:
    """Squash each image to `side` x `side` and normalise as Lite0 expects: (x - 127) / 128, NCHW."""
    batch = np.stack([resize(im, side, side) for im in images]).astype(np.float32)
    batch -= 127.0
    batch /= 128.0
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


class Backbone:
    """A frozen ImageNet backbone; `embed` returns one 1280-d feature row per image."""

    def __init__(self, session: object, side: int = INPUT_SIDE) -> None:
        self._session = session
        self.side = side

    @classmethod
    def load(cls, path: Path, threads: int = 0) -> Backbone:
        """Open the ONNX export at `path` (explicit step; nothing loads at import)."""
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"backbone file not found: {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return cls(session)

    def embed(self, images: Sequence[RGBArray], batch_size: int = 16) -> NDArray[np.float32]:
        """Return `(len(images), 1280)` features."""
        if not images:
            return np.zeros((0, FEATURES), dtype=np.float32)
        out = []
        for i in range(0, len(images), batch_size):
            x = preprocess(images[i : i + batch_size], self.side)
            out.append(self._session.run(None, {"image": x})[0])  # type: ignore[attr-defined]
        return np.concatenate(out).astype(np.float32)
