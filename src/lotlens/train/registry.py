"""Registering model folders: a registered model is copied into `models/<version>/` in the storage
root (LOTLENS_STORAGE_URL) and never changed there; the registry records that relative path. Serving
whichever model is `champion` is `lotlens.champion`'s."""

from __future__ import annotations

import logging
from pathlib import Path

from lotlens.config import Settings
from lotlens.storage import Storage
from lotlens.store import Store
from lotlens.store.registry import ModelRecord, Registry
from lotlens.vision.pipeline import ModelFolder, default_model_dir

log = logging.getLogger(__name__)


def register(store: Store, model_dir: Path, settings: Settings, actor: str, dataset: str | None = None) -> ModelRecord:
    """Copy a trained model folder into the storage root and record it (its version names it).

    Raises:
        ModelError: the folder is not a readable model.
        StorageError: the storage root refused the copy.
    """
    folder = ModelFolder.read(model_dir)
    folder.backbone_path()  # refuse a model whose backbone is missing
    storage = Storage.from_settings(settings)
    rel = f"models/{folder.version}"
    storage.put_folder(rel, model_dir)
    ModelFolder.read(storage.local_folder(rel)).backbone_path()  # what was stored is a whole model
    return Registry(store).add(
        folder.version,
        str(folder.meta.get("name", "")),
        rel,
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
