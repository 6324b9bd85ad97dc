"""The model that answers now, swapped without a restart (the serving side of the registry).

A `Champion` holds the pipeline in use; `refresh()` loads a newly promoted model beside it and swaps
the reference only once it is ready, so batches already running finish on the model they started
with. The API, the jobs' workers and the CLI's service runs each hold one.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from lotlens.batching import INFERENCE_CALLS
from lotlens.config import Settings
from lotlens.errors import ModelError, StorageError
from lotlens.memory import limit_heap_growth
from lotlens.storage import Storage
from lotlens.store import Store
from lotlens.store.registry import Registry
from lotlens.vision import Pipeline

log = logging.getLogger(__name__)


def serving_threads(settings: Settings) -> int:
    """onnxruntime intra-op threads per model call in a serving process."""
    return settings.threads or max(1, (os.cpu_count() or 1) // INFERENCE_CALLS)


class Champion:
    """The pipeline that answers now; follows the registry's `champion` alias."""

    def __init__(self, settings: Settings, store: Store, pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self.registry = Registry(store)
        self.storage = Storage.from_settings(settings)
        self._lock = threading.Lock()
        self._pipeline = pipeline
        self._version: str | None = None

    def __call__(self) -> Pipeline:
        """The current pipeline (loads the champion or the configured/bundled model the first time)."""
        if self._pipeline is None:
            self.refresh()
        assert self._pipeline is not None
        return self._pipeline

    def _load(self, folder: Path | None) -> Pipeline:
        """A pipeline set for serving: `INFERENCE_CALLS` model calls at once share the cores, each with
        its share of onnxruntime threads (`LOTLENS_THREADS`, else cores / calls), none spinning, one
        shared onnxruntime arena; and the process's heap kept from growing (`limit_heap_growth`)."""
        limit_heap_growth()
        return Pipeline.load(folder, serving_threads(self.settings), serving=True)

    def refresh(self) -> bool:
        """Load the champion if it changed; True when the model in use changed.

        A champion that fails to load is logged and the current model keeps serving.
        """
        with self._lock:
            version = self.registry.alias("champion")
            if self._pipeline is not None and version == (self._version or self._pipeline.version):
                return False
            if version is None:
                if self._pipeline is None:
                    self._pipeline = self._load(self.settings.model_dir)
                    return True
                return False
            record = self.registry.get(version)
            try:
                assert record is not None
                # A remote root's folder is copied into the local cache first: onnxruntime reads files.
                folder = self.storage.local_folder(record.path)
                new = self._load(folder)
            except (ModelError, StorageError, OSError, AssertionError) as exc:
                log.error(
                    "champion %s failed to load (%s); still serving %s",
                    version,
                    exc,
                    self._pipeline.version if self._pipeline else "nothing",
                )
                if self._pipeline is None:
                    raise
                return False
            self._pipeline, self._version = new, version
            log.info("now serving %s", version)
            return True
