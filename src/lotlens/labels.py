"""The two label sets, their order (the column order of every score array) and legacy values."""

from __future__ import annotations

TYPES: tuple[str, ...] = ("Dealer", "Stock", "Placeholder")
COLORS: tuple[str, ...] = (
    "Black",
    "Blue",
    "Brown",
    "Burgundy",
    "Green",
    "Grey",
    "Orange",
    "Pink",
    "Purple",
    "Red",
    "White",
    "Yellow",
)
PLACEHOLDER = "Placeholder"
RARE_COLORS: tuple[str, ...] = ("Purple", "Burgundy", "Pink", "Orange")

# Values the old system stored for "no color"; they read as None.
_NO_COLOR = {"", "n/a", "na", "none", "null"}
_COLOR_ALIASES = {"gray": "Grey", "silver": "Grey", "maroon": "Burgundy", "violet": "Purple"}


def normalise_type(value: str | None) -> str | None:
    """Return the canonical type for `value` (case-insensitive), None for empty.

    Raises:
        ValueError: for a value that is not a known type.
    """
    if value is None or not value.strip():
        return None
    for t in TYPES:
        if t.lower() == value.strip().lower():
            return t
    raise ValueError(f"unknown type {value!r}; expected one of {', '.join(TYPES)}")


def normalise_color(value: str | None) -> str | None:
    """Return the canonical color for `value`; legacy "N/A" and empty read as None.

    Raises:
        ValueError: for a value that is not a known color.
    """
    if value in _CANONICAL_COLORS:  # the stored form: no string work on the hot path
        return value
    if value is None or value.strip().lower() in _NO_COLOR:
        return None
    v = value.strip().lower()
    if v in _COLOR_ALIASES:
        return _COLOR_ALIASES[v]
    for c in COLORS:
        if c.lower() == v:
            return c
    raise ValueError(f"unknown color {value!r}; expected one of {', '.join(COLORS)}")


_CANONICAL_COLORS = frozenset(COLORS)
