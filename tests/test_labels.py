"""`labels`: canonical names, legacy "no color" values and aliases."""

from __future__ import annotations

import pytest

from lotlens.labels import COLORS, PLACEHOLDER, RARE_COLORS, TYPES, normalise_color, normalise_type


def test_label_sets_are_fixed_and_unique() -> None:
    # The order is the column order of every score array: changing it breaks saved models.
    assert TYPES == ("Dealer", "Stock", "Placeholder")
    assert len(set(COLORS)) == len(COLORS) == 12
    assert tuple(sorted(COLORS)) == COLORS
    assert PLACEHOLDER in TYPES
    assert set(RARE_COLORS) <= set(COLORS)


@pytest.mark.parametrize("name", TYPES)
def test_every_type_is_its_own_canonical_form(name: str) -> None:
    assert normalise_type(name) == name


@pytest.mark.parametrize(
    ("value", "expected"), [("dealer", "Dealer"), ("  STOCK ", "Stock"), ("pLaCeHoLdEr", PLACEHOLDER)]
)
def test_type_is_case_and_space_insensitive(value: str, expected: str) -> None:
    assert normalise_type(value) == expected


@pytest.mark.parametrize("value", [None, "", "   ", "\t"])
def test_empty_type_is_none(value: str | None) -> None:
    assert normalise_type(value) is None


@pytest.mark.parametrize("value", ["Truck", "Dealers", "N/A", "stock photo"])
def test_unknown_type_raises(value: str) -> None:
    with pytest.raises(ValueError, match="unknown type"):
        normalise_type(value)


@pytest.mark.parametrize("name", COLORS)
def test_every_color_is_its_own_canonical_form(name: str) -> None:
    assert normalise_color(name) == name
    assert normalise_color(name.upper()) == name
    assert normalise_color(f" {name.lower()} ") == name


@pytest.mark.parametrize("value", [None, "", "  ", "N/A", "n/a", " NA ", "None", "null", "NULL"])
def test_legacy_no_color_values_are_none(value: str | None) -> None:
    assert normalise_color(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("gray", "Grey"), ("Gray", "Grey"), ("SILVER", "Grey"), (" maroon ", "Burgundy"), ("Violet", "Purple")],
)
def test_color_aliases(value: str, expected: str) -> None:
    assert normalise_color(value) == expected


@pytest.mark.parametrize("value", ["Beige", "Gold", "Redd", "light blue", "N-A"])
def test_unknown_color_raises(value: str) -> None:
    with pytest.raises(ValueError, match="unknown color") as info:
        normalise_color(value)
    assert repr(value) in str(info.value)
