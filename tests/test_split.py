"""`train.split.group_split`: whole small groups per side, big groups split by image and label."""

from __future__ import annotations

from collections import Counter

import pytest

from lotlens.train.manifest import Row
from lotlens.train.split import group_split

BIG_KEYS = {("Stock", "Red"): 60, ("Stock", "Blue"): 60, ("Dealer", "Red"): 40, ("Dealer", "Black"): 40}
SMALL_LABELS = [("Dealer", "White"), ("Stock", "Grey"), ("Placeholder", None), ("Dealer", "Blue"), (None, "Red")]


def dataset() -> list[Row]:
    """One source with 200 images (half the set) and 40 advertisers with 5 images each."""
    rows = []
    for (type_, color), n in BIG_KEYS.items():
        rows += [Row(f"big/{type_}-{color}-{i}.jpg", type_, color, "stanford") for i in range(n)]
    for g in range(40):
        for i, (type_, color) in enumerate(SMALL_LABELS):
            rows.append(Row(f"adv{g}/{i}.jpg", type_, color, f"adv{g:02d}"))
    # Interleave so that nothing depends on the rows arriving sorted by group.
    return rows[::2] + rows[1::2]


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return dataset()


@pytest.fixture(scope="module")
def split(rows: list[Row]) -> tuple[list[int], list[int]]:
    return group_split(rows, test_size=0.3, seed=0)


def test_every_row_lands_on_exactly_one_side(rows: list[Row], split: tuple[list[int], list[int]]) -> None:
    train, test = split
    assert not set(train) & set(test)
    assert sorted(train + test) == list(range(len(rows)))
    assert test == sorted(test)
    assert train == sorted(train)


def test_small_groups_never_straddle(rows: list[Row], split: tuple[list[int], list[int]]) -> None:
    train, test = split
    train_groups = {rows[i].group for i in train} - {"stanford"}
    test_groups = {rows[i].group for i in test} - {"stanford"}
    assert not train_groups & test_groups
    assert len(train_groups) + len(test_groups) == 40
    assert test_groups  # some advertisers are held out whole


def test_big_group_is_split_by_image_with_every_label_on_both_sides(
    rows: list[Row], split: tuple[list[int], list[int]]
) -> None:
    train, test = split
    train_keys = Counter(rows[i].key for i in train if rows[i].group == "stanford")
    test_keys = Counter(rows[i].key for i in test if rows[i].group == "stanford")
    for (type_, color), n in BIG_KEYS.items():
        key = f"{type_}|{color}"
        assert train_keys[key] + test_keys[key] == n
        assert test_keys[key] == round(0.3 * n)  # stratified: 30 % of each label


def test_test_share_is_about_test_size(rows: list[Row]) -> None:
    for test_size in (0.2, 0.3, 0.5):
        _, test = group_split(rows, test_size=test_size, seed=1)
        assert len(test) / len(rows) == pytest.approx(test_size, abs=0.03)


def test_same_seed_same_split(rows: list[Row], split: tuple[list[int], list[int]]) -> None:
    assert group_split(rows, test_size=0.3, seed=0) == split
    assert group_split(list(rows), test_size=0.3, seed=0) == split


def test_other_seed_other_split(rows: list[Row], split: tuple[list[int], list[int]]) -> None:
    other = group_split(rows, test_size=0.3, seed=1)
    assert other[1] != split[1]
    held_out = {rows[i].group for i in split[1]} - {"stanford"}
    assert {rows[i].group for i in other[1]} - {"stanford"} != held_out


def test_group_size_limit_decides_between_whole_and_split() -> None:
    # 100 rows, max_group_fraction 0.1: groups of up to 10 rows stay whole, bigger ones are split.
    rows = [Row(f"a{i}", "Stock", "Red", "ten") for i in range(10)]
    rows += [Row(f"b{i}", "Stock", "Red", "eleven") for i in range(11)]
    rows += [Row(f"c{i}", "Dealer", "Blue", f"g{i % 79}") for i in range(79)]
    for seed in range(5):
        train, test = group_split(rows, test_size=0.3, seed=seed, max_group_fraction=0.1)
        ten_sides = {i in test for i in range(10)}
        eleven_sides = {i in test for i in range(10, 21)}
        assert len(ten_sides) == 1  # whole
        assert eleven_sides == {True, False}  # split


def test_one_big_group_alone_is_split() -> None:
    rows = [Row(f"{i}", "Stock", "Red" if i % 2 else "Blue", "only") for i in range(20)]
    train, test = group_split(rows, test_size=0.3, seed=0)
    assert len(test) == 6
    assert {rows[i].color for i in test} == {"Red", "Blue"}
    assert {rows[i].color for i in train} == {"Red", "Blue"}


@pytest.mark.parametrize("test_size", [0, 1, -0.1, 1.5])
def test_test_size_must_be_a_share(rows: list[Row], test_size: float) -> None:
    with pytest.raises(ValueError, match="test_size"):
        group_split(rows, test_size=test_size)
