"""The review queue's vehicle-color doubts, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from lotlens.errors import InvalidInput
from lotlens.store import Store
from lotlens.store.review import VEHICLE_QUEUE, ReviewQueue, VehicleDoubt

K1, K2, K3 = ("c:" + d * 64 for d in "123")


def _doubt(key: str, image: str = "Grey", vehicle: str = "Black", confidence: float = 0.9) -> VehicleDoubt:
    return VehicleDoubt(key, "adv", "VIN-1", image, vehicle, confidence)


def test_vehicle_doubts_are_queued_once_per_image_most_confident_first(store: Store) -> None:
    for k in (K1, K2, K3):
        store.put_image(k)
    queue = ReviewQueue(store)
    assert queue.add_vehicle_doubts([]) == 0
    assert queue.add_vehicle_doubts([_doubt(K1, confidence=0.85), _doubt(K2, "White", "Grey", 0.95)]) == 2
    # The next batch of the same vehicle says the same again, plus one new photo: only that is new.
    assert queue.add_vehicle_doubts([_doubt(K1, confidence=0.85), _doubt(K3, confidence=0.9)]) == 1
    items = queue.items(VEHICLE_QUEUE)
    assert [i.content_key for i in items] == [K2, K3, K1]
    first = items[0]
    assert (first.field, first.kind, first.model_value, first.score) == ("color", "doubt", "White", 0.95)
    assert first.candidates == [
        {"value": "Grey", "advertiser": "adv", "vehicle_id": "VIN-1", "source": "vehicle", "confidence": 0.95}
    ]
    assert VEHICLE_QUEUE in queue.datasets()


def test_accepting_a_vehicle_doubt_takes_the_vehicle_color(store: Store) -> None:
    store.put_image(K1)
    store.put_image(K2)
    queue = ReviewQueue(store)
    queue.add_vehicle_doubts([_doubt(K1), _doubt(K2)])
    a, b = queue.items(VEHICLE_QUEUE)
    assert queue.decide(a.id, "accept", "staff").decided_value == "Black"
    assert queue.decide(b.id, "relabel", "staff", "silver").decided_value == "Grey"
    with pytest.raises(InvalidInput):
        queue.decide(b.id, "relabel", "staff", "Plaid")
    decisions = queue.decisions()
    assert {k: d.decided_value for (k, f), d in decisions.items() if f == "color"} == {K1: "Black", K2: "Grey"}
    # A decided doubt is not queued again when the vehicle still disagrees.
    assert queue.add_vehicle_doubts([_doubt(K1)]) == 0
    assert queue.items(VEHICLE_QUEUE) == []


def test_two_batches_queueing_the_same_doubts_at_once_add_each_once(store: Store) -> None:
    keys = ["c:" + f"{i:064x}" for i in range(20)]
    for k in keys:
        store.put_image(k)
    added: list[int] = []
    start = threading.Barrier(2)

    def batch() -> None:
        start.wait()
        added.append(ReviewQueue(store).add_vehicle_doubts([_doubt(k) for k in keys]))

    threads = [threading.Thread(target=batch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(added) == len(keys)
    assert len(ReviewQueue(store).items(VEHICLE_QUEUE)) == len(keys)
