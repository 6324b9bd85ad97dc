"""Registering model folders, and serving whichever model is `champion` without a restart.

A registered model is copied into `<data_dir>/models/<version>/` and never changed there. A
`Champion` holds the pipeline in use; `refresh()` loads a newly promoted model beside it and swaps
the reference only once it is ready, so batches already running finish on the model they started with.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from lotlens.config import Settings
from lotlens.errors import ModelError
from lotlens.store import Store
from lotlens.store.registry import ModelRecord, Registry
from lotlens.vision import Pipeline
from lotlens.vision.pipeline import ModelFolder, default_model_dir

log = logging.getLogger(__name__)


def register(store: Store, model_dir: Path, settings: Settings, actor: str, dataset: str | None = None) -> ModelRecord:
    """Copy a trained model folder into the registry and record it (its version names it).

    Raises:
        ModelError: the folder is not a readable model.
    """
    folder = ModelFolder.read(model_dir)
    target = settings.data_dir.resolve() / "models" / folder.version
    if not target.exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp)
        tmp.rename(target)  # a folder appears whole or not at all
    ModelFolder.read(target).backbone_path()  # refuse a model whose backbone is missing
    return Registry(store).add(
        folder.version,
        str(folder.meta.get("name", "")),
        str(target),
        dict(folder.meta.get("metrics", {})),
        actor,
        dataset,
    )


BOOTSTRAP_ACTOR = "lotlens"


def register_default(store: Store, settings: Settings) -> ModelRecord | None:
    """Register the model served when no champion is set (LOTLENS_MODEL_DIR, default the bundled
    one) and make it the champion, so that `rollback` after the first promotion returns to it.

    Does nothing, and returns None, once a champion exists. Called by `db upgrade` and at server
    start; idempotent, and safe when several processes start at once.

    Raises:
        ModelError: the configured model folder is not a readable model.
    """
    registry = Registry(store)
    if registry.alias("champion") is not None:
        return None
    record = register(store, settings.model_dir or default_model_dir(), settings, BOOTSTRAP_ACTOR)
    registry.promote_if_vacant(
        record.version, actor=BOOTSTRAP_ACTOR, reason="the model lotlens serves before any promotion"
    )
    return record


class Champion:
    """The pipeline that answers now; follows the registry's `champion` alias."""

    def __init__(self, settings: Settings, store: Store, pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self.registry = Registry(store)
        self._lock = threading.Lock()
        self._pipeline = pipeline
        self._version: str | None = None

    def __call__(self) -> Pipeline:
        """The current pipeline (loads the champion or the configured/bundled model the first time)."""
        if self._pipeline is None:
            self.refresh()
        assert self._pipeline is not None
        return self._pipeline

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
                    self._pipeline = Pipeline.load(
                        self.settings.model_dir, self.settings.threads, self.settings.batch_size
                    )
                    return True
                return False
            record = self.registry.get(version)
            try:
                assert record is not None
                new = Pipeline.load(Path(record.path), self.settings.threads, self.settings.batch_size)
            except (ModelError, OSError, AssertionError) as exc:
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
