"""Image keys: normalised URLs, header keys from strong validators, content and perceptual hashes.

A *header key* lets a cache answer without downloading: it is made from the normalised URL plus a
strong validator (a strong ETag, or Last-Modified with Content-Length). A weak or missing validator
gives no header key. The *content key* (sha256 of the bytes) is always stored; the *perceptual
hash* finds re-encodings of an image a person has fixed. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode, urlsplit, urlunsplit

import numpy as np
from numpy.typing import NDArray

HEADER_PREFIX, CONTENT_PREFIX = "h:", "c:"
# Query parameters that track the visitor, not the image.
TRACKING_PARAMS = frozenset({"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "fbclid", "gclid"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_url(url: str) -> str:
    """A canonical form of `url`, for keys only (fetch the URL as given: signed CDN and S3 URLs
    break when their encoding changes): lower-case scheme and host, no default port, no fragment,
    resolved dot segments, consistent percent-encoding, sorted query without tracking parameters.
    An IPv6 literal keeps its brackets.

    Raises:
        ValueError: for a URL that is not absolute http(s), or whose port or host is malformed.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"malformed URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    # An encoded slash is data, not a separator (S3 keys): it survives as %2F.
    # Bytes, so that an encoding that is not UTF-8 (%E4) keeps its own key.
    raw = unquote_to_bytes(re.sub("%2f", "\0", parts.path, flags=re.IGNORECASE))
    path = posixpath.normpath(raw) if raw else b"/"
    if raw.endswith(b"/") and not path.endswith(b"/"):
        path += b"/"
    path_text = quote(path.replace(b"//", b"/"), safe="/:@!$&'()*+,;=-._~\0").replace("\0", "%2F")
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in TRACKING_PARAMS)
    return urlunsplit((scheme, netloc, path_text, urlencode(query, quote_via=quote), ""))


def strong_etag(value: str | None) -> str | None:
    """The ETag if it is strong (`"abc"`), None if weak (`W/"abc"`) or missing."""
    if not value:
        return None
    value = value.strip()
    if value.startswith(("W/", "w/")) or len(value) < 3 or not (value.startswith('"') and value.endswith('"')):
        return None
    return value


def header_key(url: str, headers: Mapping[str, str]) -> str | None:
    """The header key of a response, or None when its validators are not strong enough.

    Args:
        url: the image URL (normalised here).
        headers: response headers, any case.
    """
    h = {k.lower(): v for k, v in headers.items()}
    etag = strong_etag(h.get("etag"))
    if etag:
        validator = f"etag={etag}"
    else:
        modified, length = h.get("last-modified", "").strip(), h.get("content-length", "").strip()
        if not modified or not length.isdigit():
            return None
        validator = f"lm={modified};len={length}"
    digest = hashlib.sha256(f"{normalise_url(url)}\n{validator}".encode()).hexdigest()
    return HEADER_PREFIX + digest


def content_key(data: bytes) -> str:
    """The content key: sha256 of the bytes."""
    return CONTENT_PREFIX + hashlib.sha256(data).hexdigest()


def perceptual_hash(image: NDArray[np.uint8]) -> int:
    """A 64-bit DCT perceptual hash (pHash) of an RGB or grey array.

    Re-encoding, resizing and mild recompression change few bits; a different picture changes
    about half of them.
    """
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low[1:] > np.median(low[1:])  # the DC term says only "how bright"
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return int(a ^ b).bit_count()
