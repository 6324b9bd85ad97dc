"""A worker process loads the champion once and takes up a newly promoted one between chunks."""

from __future__ import annotations

from pathlib import Path

from lotlens.config import Settings
from lotlens.jobs.worker import WorkerState
from lotlens.store import Store
from lotlens.store.registry import Registry
from lotlens.train.registry import register

from synth import variant


def test_a_worker_follows_the_champion_at_its_poll_interval(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_poll_seconds=0.001)
    store = Store.from_url(settings.resolved_database_url())
    eager = WorkerState(settings)
    patient = WorkerState(settings.model_copy(update={"model_poll_seconds": 3600.0}))
    bundled = eager.champion().version
    assert patient.champion().version == bundled

    new = register(store, variant(tmp_path, "lotlens-b", 0.4), settings, "ana")
    Registry(store).promote(new.version, actor="ana", reason="better on dealer X")
    eager.follow_champion()
    patient.follow_champion()
    assert eager.champion().version == new.version
    assert patient.champion().version == bundled  # not its time to look yet
    assert eager.chunks.service._pipeline().version == new.version  # what the next chunk runs on
    for s in (eager.store, patient.store, store):
        s.engine.dispose()


def test_the_daily_monitor_is_a_beat_task(tmp_path: Path) -> None:
    from lotlens.jobs.worker import MONITOR, make_celery

    settings = Settings(data_dir=tmp_path, broker_url="memory://")
    Store.from_url(settings.resolved_database_url()).engine.dispose()
    app = make_celery(settings)
    assert app.conf.beat_schedule["monitor"]["task"] == MONITOR
    assert app.tasks[MONITOR].apply().get() == []  # nothing answered yet: nothing moved
