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
_NO_COLOR = {"", "n/a", "na", "none", "null", "-", "unknown"}

# Scraped colors: a dealer's feed says "Silver Metallic" or "Navy"; these name a palette color.
# Keys are lower case after the cleaning in `_clean_color` (finish words such as "metallic" and
# shade words such as "dark" are dropped first, so "Dark Graphite Metallic" -> "graphite").
COLOR_SYNONYMS: dict[str, str] = {
    # Grey
    "gray": "Grey", "silver": "Grey", "graphite": "Grey", "charcoal": "Grey", "gunmetal": "Grey",
    "titanium": "Grey", "anthracite": "Grey", "slate": "Grey", "ash": "Grey", "pewter": "Grey",
    "steel": "Grey", "platinum": "Grey", "magnetic": "Grey", "grigio": "Grey", "grau": "Grey",
    "gris": "Grey", "argent": "Grey", "silber": "Grey",
    # Burgundy
    "maroon": "Burgundy", "wine": "Burgundy", "bordeaux": "Burgundy", "claret": "Burgundy",
    "oxblood": "Burgundy", "merlot": "Burgundy", "burgundy red": "Burgundy", "wine red": "Burgundy",
    # Blue
    "navy": "Blue", "cobalt": "Blue", "azure": "Blue", "sapphire": "Blue", "royal": "Blue",
    "indigo": "Blue", "blau": "Blue", "bleu": "Blue", "blu": "Blue", "azul": "Blue",
    # Black
    "ebony": "Black", "onyx": "Black", "jet": "Black", "obsidian": "Black", "schwarz": "Black",
    "noir": "Black", "nero": "Black", "negro": "Black",
    # White
    "pearl": "White", "ivory": "White", "snow": "White", "alpine": "White", "arctic": "White",
    "weiss": "White", "weiß": "White", "blanc": "White", "bianco": "White", "blanco": "White",
    # Red
    "crimson": "Red", "scarlet": "Red", "cherry": "Red", "ruby": "Red", "rot": "Red", "rouge": "Red",
    "rosso": "Red", "rojo": "Red",
    # Green
    "olive": "Green", "lime": "Green", "emerald": "Green", "forest": "Green", "grün": "Green",
    "grun": "Green", "vert": "Green", "verde": "Green",
    # Brown
    "chocolate": "Brown", "mocha": "Brown", "coffee": "Brown", "espresso": "Brown", "chestnut": "Brown",
    "walnut": "Brown", "braun": "Brown", "marron": "Brown",
    # Orange
    "amber": "Orange", "tangerine": "Orange",
    # Pink
    "rose": "Pink", "fuchsia": "Pink", "magenta": "Pink", "salmon": "Pink",
    # Purple
    "violet": "Purple", "lilac": "Purple", "lavender": "Purple", "plum": "Purple", "mauve": "Purple",
    "aubergine": "Purple", "eggplant": "Purple",
    # Yellow
    "lemon": "Yellow", "canary": "Yellow", "gelb": "Yellow", "jaune": "Yellow", "giallo": "Yellow",
}  # fmt: skip

# Deliberately NOT mapped: they sit between palette colors (beige is White to some and Brown to
# others), or name two colors. The color model predicts these; the scraped value is kept beside.
UNMAPPED_COLORS: frozenset[str] = frozenset(
    {
        "beige", "gold", "champagne", "tan", "cream", "bronze", "copper", "khaki", "sand", "taupe",
        "teal", "turquoise", "aqua", "cyan", "two tone", "two-tone", "multi", "multicolor",
        "multicolour", "other", "custom", "camouflage", "camo", "chrome",
    }
)  # fmt: skip

_FINISH_WORDS = frozenset(
    {
        "metallic", "metalic", "met", "metal", "pearl", "pearlescent", "matte", "matt", "mat", "gloss",
        "glossy", "satin", "mica", "effect", "paint", "paintwork", "solid", "clearcoat", "tricoat",
        "tri-coat", "uni", "color", "colour", "finish",
    }
)  # fmt: skip
_SHADE_WORDS = frozenset({"dark", "light", "deep", "bright", "pale", "mid", "medium", "midnight"})
_TWO_COLORS = ("/", "&", "+", " and ", " with ", " over ", "two tone", "two-tone", "bicolor", "bi-color")


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

    Synonyms count ("Silver Metallic" is Grey, see `COLOR_SYNONYMS`); use it where a person chose
    the value (a fix, a manifest). For a scraped value use `scraped_color`, which never raises.

    Raises:
        ValueError: for a value that names no palette color.
    """
    if value in _CANONICAL_COLORS:  # the stored form: no string work on the hot path
        return value
    if value is None or value.strip().lower() in _NO_COLOR:
        return None
    found = _palette_color(value)
    if found is None:
        raise ValueError(f"unknown color {value!r}; expected one of {', '.join(COLORS)}")
    return found


def scraped_color(value: str | None) -> str | None:
    """The palette color a scraped color names, or None when it names none (then the model predicts).

    Never raises: an odd value in a dealer's feed ("Beige", "Black/Red", "Gold Rush") must not
    fail a batch.
    """
    if value in _CANONICAL_COLORS:
        return value
    if value is None or not isinstance(value, str) or value.strip().lower() in _NO_COLOR:
        return None
    return _palette_color(value)


def _palette_color(value: str) -> str | None:
    v = " ".join(value.strip().lower().replace("_", " ").split())
    if any(sep in v for sep in _TWO_COLORS):
        return None  # two colors: no single answer
    words = [w for w in v.replace("-", " ").split() if w not in _FINISH_WORDS] or v.replace("-", " ").split()
    for candidate in (v, " ".join(words), " ".join(w for w in words if w not in _SHADE_WORDS)):
        if candidate in UNMAPPED_COLORS:
            return None
        hit = _CANONICAL_BY_NAME.get(candidate) or COLOR_SYNONYMS.get(candidate)
        if hit:
            return hit
    # A maker's name for a paint ("Mineral White", "Soul Red Crystal", "Bronze Brown"): the last
    # word that names a color decides; an in-between color there ("Rose Gold") means no answer.
    for w in reversed(words):
        if w in UNMAPPED_COLORS:
            return None
        hit = _CANONICAL_BY_NAME.get(w) or COLOR_SYNONYMS.get(w)
        if hit:
            return hit
    return None


_CANONICAL_COLORS = frozenset(COLORS)
_CANONICAL_BY_NAME = {c.lower(): c for c in COLORS} | {"grey": "Grey"}
