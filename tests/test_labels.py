"""`labels`: canonical names, legacy "no color" values and aliases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotlens.labels import (
    COLOR_SYNONYMS,
    COLORS,
    PLACEHOLDER,
    RARE_COLORS,
    TYPES,
    UNMAPPED_COLORS,
    normalise_color,
    normalise_type,
    scraped_color,
)


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
    [
        ("gray", "Grey"),
        ("Gray", "Grey"),
        ("SILVER", "Grey"),
        ("Silver Metallic", "Grey"),
        ("Dark Graphite Metallic", "Grey"),
        ("charcoal", "Grey"),
        (" maroon ", "Burgundy"),
        ("Wine", "Burgundy"),
        ("bordeaux", "Burgundy"),
        ("Navy", "Blue"),
        ("light blue", "Blue"),
        ("Blue Pearl", "Blue"),
        ("Pearl White", "White"),
        ("Mineral White", "White"),
        ("Soul Red Crystal", "Red"),
        ("Bronze Brown", "Brown"),
        ("Violet", "Purple"),
        ("Midnight Black Metallic", "Black"),
    ],
)
def test_color_synonyms(value: str, expected: str) -> None:
    assert normalise_color(value) == expected
    assert scraped_color(value) == expected


@pytest.mark.parametrize(
    "value", ["Beige", "Gold", "Champagne", "two-tone", "Two Tone", "Black/Red", "Red & White", "Rose Gold", "Teal"]
)
def test_deliberately_unmapped_scraped_colors_give_none(value: str) -> None:
    assert scraped_color(value) is None


@given(st.text(max_size=40))
def test_scraped_color_never_raises_and_names_a_palette_color_or_none(value: str) -> None:
    assert scraped_color(value) in (*COLORS, None)


@given(st.sampled_from(sorted(COLOR_SYNONYMS)), st.sampled_from(["", " metallic", " Pearl", "  "]))
def test_every_synonym_maps_whatever_its_case_and_finish(word: str, finish: str) -> None:
    assert scraped_color(word.upper() + finish) == COLOR_SYNONYMS[word]


def test_the_synonym_table_names_only_palette_colors_and_never_an_unmapped_one() -> None:
    assert set(COLOR_SYNONYMS.values()) <= set(COLORS)
    assert not set(COLOR_SYNONYMS) & UNMAPPED_COLORS


@pytest.mark.parametrize("value", ["Beige", "Gold", "Redd", "N-A", "Black/Red"])
def test_unknown_color_raises(value: str) -> None:
    with pytest.raises(ValueError, match="unknown color") as info:
        normalise_color(value)
    assert repr(value) in str(info.value)
