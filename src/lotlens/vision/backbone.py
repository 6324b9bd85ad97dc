"""EfficientNet-Lite0 image embeddings through onnxruntime (no torch at serving time)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lotlens.errors import ModelError
from lotlens.imaging import RGBArray, resize

INPUT_SIDE = 224
FEATURES = 1280
# Images per onnxruntime call. On CPU the cost per image is flat from 1 to 16 images a call, while
# onnxruntime's memory arena keeps the largest call's buffers: two calls of 32 images in flight
# peaked at 1,552 MiB in batches of 16 and at 566 MiB in batches of 4 (bench/bench_service.py's memory probe).
MODEL_BATCH = 4


def preprocess(images: Sequence[RGBArray], side: int = INPUT_SIDE) -> NDArray[np.float32]:
    """Squash each image to `side` x `side` and normalise as Lite0 expects: (x - 127) / 128, NCHW."""
    batch = np.stack([resize(im, side, side) for im in images]).astype(np.float32)
    batch -= 127.0
    batch /= 128.0
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


ARENA_SAME_AS_REQUESTED = 1  # OrtArenaCfg's arena_extend_strategy: grow by what is asked, not by doubling


@functools.cache
def shared_cpu_arena() -> bool:
    """Register one CPU memory arena for the whole process (once), for serving sessions to share.

    The arena grows by exactly what a call asks for (no doubling) and keeps its buffers for the next
    call, so tensors do not cost fresh pages from the kernel on every call. Without any arena each
    call's buffers came from malloc and went back to the system, which cost about 30% of a cold
    image's CPU in page faults (system time); a separate arena per session, each growing by doubling,
    kept 100 MiB more at peak than this shared one. Returns False if this onnxruntime cannot.
    """
    import onnxruntime as ort

    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, ARENA_SAME_AS_REQUESTED, -1, -1))
    except (AttributeError, RuntimeError):  # an older or a trimmed onnxruntime: sessions keep their own
        return False
    return True


def session_options(threads: int, serving: bool) -> object:
    """onnxruntime options shared by the backbone and the detector.

    `serving=True` is for a process that runs several model calls at once, for long (the service):
    idle intra-op threads sleep instead of spinning (spinning is the lowest latency for one caller,
    but two calls on two cores lose the cores to each other's spinning threads); the sessions share
    one CPU arena (`shared_cpu_arena`) and plan no memory pattern (a pattern is one block per input
    shape and call, held for good), so buffers are reused across calls, sessions and shapes and the
    peak stays bounded (see bench/bench_service.py's memory probe).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0" if serving else "1")
    if serving:
        opts.enable_mem_pattern = False
        if shared_cpu_arena():
            opts.add_session_config_entry("session.use_env_allocators", "1")
        else:
            opts.enable_cpu_mem_arena = False
    return opts


class Backbone:
    """A frozen ImageNet backbone; `embed` returns one 1280-d feature row per image."""

    def __init__(self, session: object, side: int = INPUT_SIDE) -> None:
        self._session = session
        self.side = side

    @classmethod
    def load(cls, path: Path, threads: int = 0, serving: bool = False) -> Backbone:
        """Open the ONNX export at `path` (explicit step; nothing loads at import).

        Args:
            threads: onnxruntime intra-op threads (0: all cores).
            serving: set for a serving process (see `session_options`).
        """
        import onnxruntime as ort

        if not path.is_file():
            raise ModelError(f"backbone file not found: {path}")
        session = ort.InferenceSession(str(path), session_options(threads, serving), providers=["CPUExecutionProvider"])
        return cls(session)

    def embed(self, images: Sequence[RGBArray], batch_size: int = MODEL_BATCH) -> NDArray[np.float32]:
        """Return `(len(images), 1280)` features."""
        if not images:
            return np.zeros((0, FEATURES), dtype=np.float32)
        out = []
        for i in range(0, len(images), batch_size):
            x = preprocess(images[i : i + batch_size], self.side)
            out.append(self._session.run(None, {"image": x})[0])  # type: ignore[attr-defined]
        return np.concatenate(out).astype(np.float32)
