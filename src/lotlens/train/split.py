"""Train/test splits that respect groups: images of one source look alike.

A small group goes whole to one side. A group too big to hold out whole (the Stanford crops are
most of Stock and Dealer in the dev set) is split by image, stratified by label.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from lotlens.train.manifest import Row


def group_split(
    rows: Sequence[Row], test_size: float = 0.3, seed: int = 0, max_group_fraction: float = 0.08
) -> tuple[list[int], list[int]]:
    """Return (train indices, test indices).

    Args:
        test_size: the share of rows to hold out.
        max_group_fraction: groups holding more than this share of all rows are split by image.
    """
    if not 0 < test_size < 1:
        raise ValueError("test_size must be between 0 and 1")
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_group[r.group].append(i)
    limit = max(2, int(max_group_fraction * len(rows)))
    test: list[int] = []
    small = []
    for g in sorted(by_group):
        idx = by_group[g]
        if len(idx) <= limit:
            small.append(g)
            continue
        by_key: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            by_key[rows[i].key].append(i)
        for k in sorted(by_key):
            members = sorted(by_key[k])
            rng.shuffle(members)
            n = len(members) * test_size
            take = int(n) + (1 if rng.random() < n - int(n) else 0)
            test.extend(members[:take])
    # Whole small groups, in random order, while they fit the test share of small rows.
    rng.shuffle(small)
    target = test_size * sum(len(by_group[g]) for g in small)
    held = 0
    for g in small:
        size = len(by_group[g])
        if held + size <= target + 0.5 * size:
            test.extend(by_group[g])
            held += size
    test_set = set(test)
    return [i for i in range(len(rows)) if i not in test_set], sorted(test_set)
