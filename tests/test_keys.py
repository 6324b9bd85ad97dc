"""URL normalisation, header keys, content keys and the perceptual hash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from lotlens.imaging import decode
from lotlens.keys import content_key, hamming, header_key, normalise_url, perceptual_hash, strong_etag
from lotlens.train.generate import placeholders

from synth import car, jpeg


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://CDN.Example.COM:443/a/./b/../img.jpg#x", "https://cdn.example.com/a/img.jpg"),
        ("http://cdn.example.com:80/img.jpg?b=2&a=1&utm_source=feed", "http://cdn.example.com/img.jpg?a=1&b=2"),
        ("http://cdn.example.com:8080/img%20one.jpg", "http://cdn.example.com:8080/img%20one.jpg"),
        ("http://cdn.example.com/img one.jpg", "http://cdn.example.com/img%20one.jpg"),
        ("http://cdn.example.com", "http://cdn.example.com/"),
        ("http://cdn.example.com./dir/", "http://cdn.example.com/dir/"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://x/y.jpg", "/relative.jpg", "http:///nohost", "http://x:notaport/"])
def test_normalise_url_refuses_non_http(url: str) -> None:
    with pytest.raises(ValueError, match="URL|port"):
        normalise_url(url)


def test_strong_and_weak_etags() -> None:
    assert strong_etag('"abc"') == '"abc"'
    assert strong_etag('W/"abc"') is None
    assert strong_etag("abc") is None
    assert strong_etag(None) is None


def test_header_key_needs_strong_validators() -> None:
    url = "https://cdn.example.com/1.jpg"
    by_etag = header_key(url, {"ETag": '"v1"'})
    assert by_etag is not None
    assert by_etag.startswith("h:")
    assert header_key(url, {"etag": '"v1"'}) == by_etag  # header names in any case
    assert header_key(url.upper().replace("HTTPS", "https"), {"ETag": '"v1"'}) != by_etag  # path case matters
    assert header_key("https://CDN.example.com:443/1.jpg", {"ETag": '"v1"'}) == by_etag
    assert header_key(url, {"ETag": '"v2"'}) != by_etag
    assert header_key(url, {"ETag": 'W/"v1"'}) is None
    assert header_key(url, {"Last-Modified": "Mon, 02 Nov 2026 10:00:00 GMT"}) is None
    lm = header_key(url, {"Last-Modified": "Mon, 02 Nov 2026 10:00:00 GMT", "Content-Length": "1234"})
    assert lm is not None
    assert lm != by_etag
    assert header_key(url, {}) is None


def test_content_key_is_sha256_of_bytes() -> None:
    assert content_key(b"abc") == "c:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _reencode(data: bytes, quality: int, scale: float) -> bytes:
    im = Image.open(io.BytesIO(data))
    im = im.resize((int(im.width * scale), int(im.height * scale)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_perceptual_hash_survives_reencoding_but_tells_pictures_apart() -> None:
    red = jpeg(car("Red", "scene", 1))
    other = jpeg(Image.fromarray(placeholders(1, seed=5)[0][1]))
    h = perceptual_hash(decode(red))
    assert 0 <= h < 2**63
    assert hamming(h, perceptual_hash(decode(_reencode(red, 60, 0.7)))) <= 6
    assert hamming(h, perceptual_hash(decode(other))) >= 16
    assert perceptual_hash(np.asarray(Image.open(io.BytesIO(red)).convert("L"))) == perceptual_hash(
        np.asarray(Image.open(io.BytesIO(red)).convert("L"))
    )


URL_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@given(
    st.sampled_from(["http", "https", "HTTP", "ftp", "javascript", ""]),
    st.sampled_from(["cdn.test", "CDN.Test.", "[fd00::1]", "[::1", "h:99999", "h:80", "1.2.3.4", ""]),
    URL_TEXT,
    URL_TEXT,
)
def test_normalise_url_is_idempotent_or_says_value_error(scheme: str, host: str, path: str, query: str) -> None:
    url = f"{scheme}://{host}/{path}?{query}"
    try:
        once = normalise_url(url)
    except ValueError:
        return  # the only way it may refuse: the service skips that image as bad_url
    assert normalise_url(once) == once
    assert once.startswith(("http://", "https://"))


@given(URL_TEXT, st.sampled_from(['"v1"', 'W/"v1"', "", "v1"]))
def test_header_key_depends_on_the_normalised_url_and_a_strong_validator_only(path: str, etag: str) -> None:
    url = f"https://cdn.test/{path}"
    try:
        normalise_url(url)
    except ValueError:
        return
    key = header_key(url, {"ETag": etag})
    assert (key is not None) == (etag == '"v1"')
    if key:
        assert key == header_key(url.replace("https://cdn.test", "HTTPS://CDN.TEST:443"), {"etag": etag})
