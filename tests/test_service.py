"""The batch service end to end: a real local server, a real SQLite store, the bundled model."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from lotlens.config import Settings
from lotlens.fetch import Fetcher
from lotlens.labels import COLORS, TYPES
from lotlens.service import Item, Result, Service
from lotlens.store import Store
from lotlens.vision import Pipeline

from fakes import FakePipeline
from httpserver import ETAGS, HITS, NAMES, PEERS, RAW_TARGETS, SENT


@pytest.fixture
def service(tmp_path: Path, pipeline: Pipeline, store: Store) -> Service:
    settings = Settings(
        data_dir=tmp_path,
        allow_private_addresses=True,
        fetch_backoff=0.01,
        fetch_retries=1,
        fetch_total_timeout=5,
        verify_fraction=0.0,  # tests that count GETs: no random verification
    )
    return Service(settings, store, lambda: pipeline)


def classify(service: Service, advertiser: str, *urls: str | Item) -> list[Result]:
    items = [u if isinstance(u, Item) else Item(u) for u in urls]
    return asyncio.run(service.classify(advertiser, items))


def gets(path_prefix: str) -> int:
    return sum(n for k, n in HITS.items() if k.startswith(f"GET {path_prefix}"))


def sent(path_prefix: str, status: int) -> int:
    """GETs of paths under `path_prefix` the server answered with `status` (200: with the bytes)."""
    return sum(n for k, n in SENT.items() if k.startswith(f"GET {path_prefix}") and k.endswith(f" {status}"))


def test_answers_in_order_with_scores_and_model_version(service: Service, server: str) -> None:
    urls = [f"{server}/img/a{i}.jpg?name={n}&etag=%22{n}%22" for i, n in enumerate(["car", "blue", "yellow"])]
    results = classify(service, "adv", *urls)
    assert [r.url for r in results] == urls
    for r in results:
        assert (r.status, r.source) == ("ok", "model")
        assert r.type in TYPES
        assert r.image_key
        assert r.image_key.startswith("c:")
        assert set(r.scores["type"]) == set(TYPES)
        assert r.model_version == service._pipeline().version
    assert service.last_stats.classified == 3


def test_second_run_needs_no_get_for_strong_validators_and_no_inference(service: Service, server: str) -> None:
    strong = [f"{server}/img/s{i}.jpg?name={n}&etag=%22s{i}%22" for i, n in enumerate(["car", "blue"])]
    by_lm = [f"{server}/img/lm.jpg?name=yellow&lm=1"]
    weak = [f"{server}/img/w.jpg?name=car&etag=W/%22w%22"]
    none = [f"{server}/img/n.jpg?name=blue"]
    batch = strong + by_lm + weak + none
    first = classify(service, "adv", *batch)
    assert service.last_stats.classified == 3  # car and blue each appear twice: same bytes, one inference
    before = {p: sent(p, 200) for p in ("/img/s", "/img/lm", "/img/w", "/img/n")}
    not_modified = sent("/img/", 304)
    second = classify(service, "adv", *batch)
    stats = service.last_stats
    assert stats.classified == 0
    assert sent("/img/s", 200) == before["/img/s"]  # strong ETag: If-None-Match, answered 304
    assert sent("/img/lm", 200) == before["/img/lm"]  # Last-Modified + Content-Length: If-Modified-Since, 304
    assert sent("/img/w", 200) == before["/img/w"] + 1  # weak ETag: the whole GET, then a content-key hit
    assert sent("/img/n", 200) == before["/img/n"] + 1
    assert sent("/img/", 304) == not_modified + 3
    assert (stats.header_hits, stats.content_hits, stats.not_modified, stats.heads) == (3, 2, 3, 0)
    assert [r.source for r in second] == ["cache"] * 5
    assert [(r.type, r.color, r.image_key) for r in second] == [(r.type, r.color, r.image_key) for r in first]


def test_fix_follows_the_image_across_new_urls_headers_and_reencodes(service: Service, server: str) -> None:
    [r] = classify(service, "adv", f"{server}/img/orig.jpg?name=car&etag=%22o1%22")
    fixed = next(t for t in TYPES if t != r.type)
    service.store.add_fix(
        r.image_key, "type", fixed, actor="dealer", role="advertiser:adv", scope="advertiser", advertiser="adv"
    )
    again = classify(service, "adv", f"{server}/img/orig.jpg?name=car&etag=%22o1%22")[0]
    assert (again.type, again.source) == (fixed, "manual")
    # The CDN moved the image to a new URL with new headers; the bytes did not change.
    moved = classify(service, "adv", f"{server}/img/moved/x.jpg?name=car&etag=%22new%22")[0]
    assert (moved.type, moved.source, moved.image_key) == (fixed, "manual", r.image_key)
    # A re-encode (new bytes) within the pHash distance finds the fix and says so.
    copy = classify(service, "adv", f"{server}/img/copy.jpg?name=car-reencoded")[0]
    assert copy.image_key != r.image_key
    assert (copy.type, copy.source, copy.near_duplicate_of) == (fixed, "manual", r.image_key)
    # Another advertiser on the same CDN does not see adv's fix.
    other = classify(service, "other", f"{server}/img/orig.jpg?name=car&etag=%22o1%22")[0]
    assert (other.type, other.source) == (r.type, "cache")


def test_host_whose_header_key_changes_over_same_bytes_is_distrusted(service: Service, server: str) -> None:
    host, url = "127.0.0.1", f"{server}/img/d.jpg?name=blue"
    ETAGS["/img/d.jpg"] = '"d1"'
    classify(service, "adv", url)
    assert service.store.host_trusted(host)
    ETAGS["/img/d.jpg"] = '"d2"'  # same URL, same bytes, new ETag
    classify(service, "adv", url)
    assert not service.store.host_trusted(host)
    assert service.last_stats.hosts_distrusted == [host]
    before = sent("/img/d.jpg", 200)
    classify(service, "adv", url)
    assert sent("/img/d.jpg", 200) == before + 1  # content keys only: the whole GET, never a 304
    assert service.last_stats.conditional_gets == 0


def test_advertiser_forced_to_content_keys(tmp_path: Path, pipeline: Pipeline, server: str) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True, key_modes={"strict": "content"})
    svc = Service(settings, Store.from_url(settings.resolved_database_url()), lambda: pipeline)
    before = sent("/img/k.jpg", 200)
    classify(svc, "strict", f"{server}/img/k.jpg?name=car&etag=%22k%22")
    classify(svc, "strict", f"{server}/img/k.jpg?name=car&etag=%22k%22")
    assert sent("/img/k.jpg", 200) == before + 2  # the bytes every time: never a conditional GET
    assert (svc.last_stats.conditional_gets, svc.last_stats.content_hits) == (0, 1)


def test_known_color_is_answered_and_the_same_bytes_without_one_get_the_model_s(scripted: Service, server: str) -> None:
    url = f"{server}/img/kc.jpg?name=yellow"
    known, unknown = classify(scripted, "adv", Item(url, vehicle_id="v1", color="purple"), Item(url + "&x=1"))
    assert (known.type, known.color, known.color_confident) == ("Dealer", "Purple", True)
    assert unknown.image_key == known.image_key  # the same bytes: one inference
    assert unknown.color in COLORS
    assert unknown.color != "Purple"  # the scrape's color is that request's, not the image's
    later = classify(scripted, "adv", Item(url + "&x=2"))[0]  # from the cache, without a scraped color
    assert later.color == unknown.color


def test_every_failure_mode_skips_with_its_reason_and_never_fails_the_batch(service: Service, server: str) -> None:
    cases = {
        f"{server}/missing.jpg": "http_404",
        f"{server}/error.jpg": "http_500",
        f"{server}/slow.jpg": "timeout",
        f"{server}/reset.jpg": ("connection", "truncated"),
        f"{server}/truncated.jpg": "truncated",
        f"{server}/html.jpg": "not_an_image",
        f"{server}/img/bomb.png?name=bomb": "too_many_pixels",
        f"{server}/img/corrupt.jpg?name=corrupt": ("truncated", "corrupt"),
        f"{server}/loop.jpg": "too_many_redirects",
        "ftp://example.com/x.jpg": "bad_url",
        "not a url": "bad_url",
    }
    service.settings = service.settings.model_copy(update={"fetch_timeout": 0.5})
    urls = [f"{server}/car.jpg", *cases, f"{server}/wrong-type.jpg"]
    results = classify(service, "adv", *urls)
    assert [r.url for r in results] == urls
    assert results[0].status == "ok"
    assert results[-1].status == "ok"  # an image served as text/html is still an image
    for r in results[1:-1]:
        expected = cases[r.url]
        assert r.status == "skipped", r.url
        assert r.reason in ((expected,) if isinstance(expected, str) else expected), (r.url, r.reason)
    assert sum(service.last_stats.skipped.values()) == len(cases)


def test_redirect_to_loopback_is_skipped_with_the_guard_on(
    tmp_path: Path, pipeline: Pipeline, server: str, server2: str
) -> None:
    settings = Settings(data_dir=tmp_path, fetch_retries=0)
    svc = Service(
        settings,
        Store.from_url(settings.resolved_database_url()),
        lambda: pipeline,
        fetcher=lambda: Fetcher(settings, extra_allowed=("127.0.0.2",)),
    )
    ok, blocked = classify(svc, "adv", f"{server2}/car.jpg", f"{server2}/redirect?to={server}/car.jpg")
    assert ok.status == "ok"
    assert (blocked.status, blocked.reason) == ("skipped", "blocked_address")


def test_a_model_error_skips_its_images_not_the_batch(tmp_path: Path, server: str) -> None:
    class Broken:
        version = "broken"

        def classify(self, *_: Any) -> list[Any]:
            raise RuntimeError("out of memory")

    settings = Settings(data_dir=tmp_path, allow_private_addresses=True)
    svc = Service(settings, Store.from_url(settings.resolved_database_url()), lambda: Broken())  # type: ignore[arg-type,return-value]
    [r] = classify(svc, "adv", f"{server}/img/me.jpg?name=blue")
    assert (r.status, r.reason) == ("skipped", "model_error: RuntimeError")


def test_fix_is_never_overwritten_by_a_classify_that_finishes_after_it(service: Service, server: str) -> None:
    """Randomised interleavings of concurrent classify and fix calls on the same images."""
    urls = [f"{server}/img/r{i}.jpg?name={n}" for i, n in enumerate(["car", "blue", "yellow"])]
    keys = [r.image_key for r in classify(service, "adv", *urls)]
    rng = random.Random(5)
    last: dict[str, str] = {}
    lock = threading.Lock()

    def fixer() -> None:
        for _ in range(10):
            k = rng.choice(keys)
            t = rng.choice(TYPES)
            with lock:
                service.store.add_fix(k, "type", t, actor="s", role="staff", scope="global", advertiser=None)
                last[k] = t

    async def main() -> None:
        runs = [service.classify("adv", [Item(u) for u in rng.sample(urls, len(urls))]) for _ in range(4)]
        await asyncio.gather(asyncio.to_thread(fixer), *runs)

    asyncio.run(main())
    final = {r.image_key: r for r in classify(service, "adv", *urls)}
    for k, t in last.items():
        assert (final[k].type, final[k].source) == (t, "manual")


def test_a_cdn_that_keeps_its_etag_over_new_bytes_is_caught_by_verification(service: Service, server: str) -> None:
    url = f"{server}/img/liar.jpg"
    ETAGS["/img/liar.jpg"], NAMES["/img/liar.jpg"] = '"forever"', "blue"
    [first] = classify(service, "adv", url)
    [honest] = classify(service, "adv", url)
    assert (honest.image_key, service.last_stats.gets) == (first.image_key, 0)
    service.settings = service.settings.model_copy(update={"verify_fraction": 1.0})
    classify(service, "adv", url)
    assert (service.last_stats.verified, service.last_stats.header_key_mismatches) == (1, 0)
    NAMES["/img/liar.jpg"] = "yellow"  # new bytes, same URL, same strong ETag
    service.settings = service.settings.model_copy(update={"verify_fraction": 0.0})
    [stale] = classify(service, "adv", url)
    assert stale.image_key == first.image_key  # unverified, the lie goes unnoticed
    service.settings = service.settings.model_copy(update={"verify_fraction": 1.0})
    [caught] = classify(service, "adv", url)
    assert service.last_stats.header_key_mismatches == 1
    assert caught.image_key != first.image_key
    assert caught.source == "model"
    assert not service.store.host_trusted("127.0.0.1")
    service.settings = service.settings.model_copy(update={"verify_fraction": 0.0})
    [after] = classify(service, "adv", url)  # content keys only from now on: a GET every time
    assert (after.image_key, service.last_stats.gets, service.last_stats.heads) == (caught.image_key, 1, 0)


def test_a_server_that_ignores_validators_sends_the_bytes_once(service: Service, server: str) -> None:
    url = f"{server}/img/deaf.jpg?name=yellow&etag=%22deaf%22&deaf=1"
    [first] = classify(service, "adv", url)
    before = gets("/img/deaf.jpg")
    [again] = classify(service, "adv", url)
    stats = service.last_stats
    assert gets("/img/deaf.jpg") == before + 1  # the conditional GET got the bytes: no second GET
    assert (stats.conditional_gets, stats.not_modified, stats.content_hits, stats.classified) == (1, 0, 1, 0)
    assert (again.image_key, again.source) == (first.image_key, "cache")


def test_one_client_keeps_its_connection_alive_across_batches(service: Service, server: str) -> None:
    url = f"{server}/img/alive.jpg?name=blue&etag=%22alive%22"

    def ports() -> list[int]:
        return [port for path, port in PEERS if path == "/img/alive.jpg"]

    async def two_batches(resident: bool) -> None:
        if resident:
            async with service:
                await service.classify("adv", [Item(url)])
                await service.classify("adv", [Item(url)])
        else:
            await service.classify("adv", [Item(url)])
            await service.classify("adv", [Item(url)])

    seen = len(ports())  # the server outlives the test (and runs it once per store)
    asyncio.run(two_batches(resident=True))
    first, second = ports()[seen:]
    assert first == second  # one client, one kept-alive connection
    asyncio.run(two_batches(resident=False))
    third, fourth = ports()[seen + 2 :]
    assert third != fourth  # a client per batch: a new connection each time


def test_url_trust_is_earned_used_and_lost(scripted: Service, server: str) -> None:
    svc, host = scripted, "127.0.0.1"
    svc.settings = svc.settings.model_copy(update={"url_trust_checks": 4})
    paths = [f"/img/trust{i}.jpg" for i in range(2)]
    for i, p in enumerate(paths):
        ETAGS[p], NAMES[p] = f'"t{i}"', "car"
    urls = [server + p for p in paths]
    first = classify(svc, "adv", *urls)
    classify(svc, "adv", *urls)  # 2 checks (304s) of 4: not yet
    assert (svc.last_stats.not_modified, svc.last_stats.url_trust_earned) == (2, [])
    classify(svc, "adv", *urls)
    assert svc.last_stats.url_trust_earned == [host]
    assert svc.store.host_trust([host])[host].urls
    # Earned: answered from the URL alone, no request at all.
    before = sum(HITS.get(f"GET {p}", 0) for p in paths)
    trusted = classify(svc, "adv", *urls)
    assert sum(HITS.get(f"GET {p}", 0) for p in paths) == before
    assert (svc.last_stats.url_hits, svc.last_stats.conditional_gets, svc.last_stats.gets) == (2, 0, 0)
    assert [(r.image_key, r.source) for r in trusted] == [(r.image_key, "cache") for r in first]
    # The random sample still checks: the same bytes keep the trust.
    svc.settings = svc.settings.model_copy(update={"verify_fraction": 1.0})
    classify(svc, "adv", *urls)
    assert (svc.last_stats.verified, svc.last_stats.url_hits) == (2, 0)
    assert svc.store.host_trust([host])[host].urls
    # New bytes under a trusted URL: unseen until the sample checks that URL, then trust is lost.
    NAMES[paths[0]] = "yellow"
    svc.settings = svc.settings.model_copy(update={"verify_fraction": 0.0})
    assert classify(svc, "adv", urls[0])[0].image_key == first[0].image_key
    svc.settings = svc.settings.model_copy(update={"verify_fraction": 1.0})
    [caught] = classify(svc, "adv", urls[0])
    assert caught.image_key != first[0].image_key
    assert svc.last_stats.url_trust_lost == [host]
    assert not svc.store.host_trust([host])[host].urls
    svc.settings = svc.settings.model_copy(update={"verify_fraction": 0.0})
    for _ in range(3):  # lost for good: every answer asks the CDN again
        classify(svc, "adv", *urls)
        assert (svc.last_stats.url_hits, svc.last_stats.url_trust_earned) == (0, [])


@pytest.fixture
def scripted(tmp_path: Path, store: Store) -> Service:
    """A service over a pipeline whose answers the test sets (every image a Dealer photo)."""
    settings = Settings(data_dir=tmp_path, allow_private_addresses=True, fetch_retries=0, verify_fraction=0.0)
    return Service(settings, store, lambda: FakePipeline())  # type: ignore[arg-type,return-value]


def test_scraped_colors_outside_the_palette_never_fail_the_batch(scripted: Service, server: str) -> None:
    service = scripted
    colors = ["Beige", "Silver", "Black/Red", "Navy Metallic", "x" * 300, "\0odd"]
    items = [Item(f"{server}/img/sc{i}.jpg?name=blue&etag=%22sc{i}%22", color=c) for i, c in enumerate(colors)]
    for attempt in ("first", "cached"):
        results = classify(service, "adv", *items)
        assert [r.status for r in results] == ["ok"] * len(colors), attempt
        assert [r.scraped_color for r in results] == colors
        beige, silver, two, navy, long, odd = results
        assert (silver.color, navy.color) == ("Grey", "Blue")  # synonyms answer as the palette color
        for r in (beige, two, long, odd):  # unmapped: the model's color, the scraped value beside it
            assert r.color in COLORS
            assert r.scores["color"], "the color model predicted"


def test_odd_urls_are_skipped_one_by_one_and_the_good_image_is_answered(service: Service, server: str) -> None:
    odd = [
        "http://[fd00::1/x.jpg",
        "http://h.test:99999/x.jpg",
        f"{server}/redirect?to=http://127.0.0.1:99999/x.jpg",
        "javascript:alert(1)",
        "",
        "http://h.test/" + "a" * 10_000,
        "http://h.test/\0.jpg",
    ]
    good = f"{server}/img/good.jpg?name=car"
    results = classify(service, "adv", *odd, good)
    assert results[-1].status == "ok"
    assert results[-1].type in TYPES
    assert [r.status for r in results[:-1]] == ["skipped"] * len(odd)
    assert {r.reason for r in results[:-1]} == {"bad_url"}


def test_an_ipv6_literal_is_one_skipped_image(service: Service, server: str) -> None:
    results = classify(service, "adv", "http://[fd00::1]/x.jpg", f"{server}/img/v6.jpg?name=car")
    assert results[0].status == "skipped"
    assert results[0].reason in ("connection", "timeout", "blocked_address")
    assert results[1].status == "ok"


def test_the_service_fetches_the_url_as_given_and_keys_it_normalised(service: Service, server: str) -> None:
    target = "/raw/svc%2Fb//c.jpg?sig=a%2Fb+c&x=1"
    results = classify(service, "adv", f"{server}{target}")
    assert results[0].status == "ok"
    assert target in RAW_TARGETS


def test_answers_carry_their_vehicle_color_and_whether_the_color_is_sure(scripted: Service, server: str) -> None:
    # The scripted model answers every photo by its strongest channel with a score of 0.8.
    vehicle = [Item(f"{server}/img/veh{i}.jpg?name=blue&salt={i}", vehicle_id="VIN-1") for i in range(3)]
    other = Item(f"{server}/img/veh-red.jpg?name=car", vehicle_id="VIN-2")
    results = classify(scripted, "adv", *vehicle, other)
    own = results[0].color
    assert own is not None
    assert [r.color for r in results[:3]] == [own] * 3
    assert [r.vehicle_color for r in results[:3]] == [own] * 3
    assert results[0].vehicle_color_confidence is not None
    assert results[0].vehicle_color_confidence > 0.5
    assert results[3].vehicle_color == results[3].color  # a vehicle of one photo
    assert {r.color_confident for r in results} == {True}  # 0.8 >= LOTLENS_LOW_CONFIDENCE (0.5)
    # A fixed color votes as certain: two fixes to Yellow outvote the third photo.
    keys = [r.image_key or "" for r in results[:2]]
    for key in keys:
        scripted.store.add_fix(key, "color", "Yellow", actor="s", role="staff", scope="advertiser", advertiser="adv")
    again = classify(scripted, "adv", *vehicle)
    assert {r.vehicle_color for r in again} == {"Yellow"}
    assert again[2].color == own  # each image keeps its own answer


def test_a_photo_that_disagrees_with_a_confident_vehicle_color_is_queued_as_a_doubt(
    scripted: Service, server: str
) -> None:
    from lotlens.store.review import VEHICLE_QUEUE, ReviewQueue

    vehicle = [Item(f"{server}/img/dbt{i}.jpg?name=blue&salt=d{i}", vehicle_id="VIN-D") for i in range(5)]
    first = classify(scripted, "adv", *vehicle)
    own = first[0].color
    assert {r.color for r in first} == {own}
    queue = ReviewQueue(scripted.store)
    assert queue.items(VEHICLE_QUEUE) == []  # every photo agrees: nothing to doubt
    # Four photos fixed to Yellow make the vehicle Yellow with confidence > 0.8; the fifth keeps
    # its model color, which the vehicle now contradicts.
    keys = [r.image_key or "" for r in first]
    for key in keys[:4]:
        scripted.store.add_fix(key, "color", "Yellow", actor="s", role="staff", scope="advertiser", advertiser="adv")
    for _ in range(2):  # a second batch of the same vehicle queues nothing new
        again = classify(scripted, "adv", *vehicle)
        assert (again[4].color, again[4].vehicle_color) == (own, "Yellow")
        assert (again[4].vehicle_color_confidence or 0) >= 0.8
        [doubt] = queue.items(VEHICLE_QUEUE)
        assert (doubt.content_key, doubt.field, doubt.kind, doubt.model_value) == (keys[4], "color", "doubt", own)
        assert doubt.candidates[0]["value"] == "Yellow"
        assert doubt.candidates[0]["vehicle_id"] == "VIN-D"
        assert doubt.score == again[4].vehicle_color_confidence
    # Another advertiser's vehicle of the same id is its own vehicle: nothing queued for it.
    other = classify(scripted, "other", *vehicle[4:])
    assert other[0].vehicle_color == own
    assert len(queue.items(VEHICLE_QUEUE)) == 1


def test_the_model_is_taken_off_the_event_loop(tmp_path: Path, store: Store, server: str) -> None:
    """The first batch of a process loads the model: that must not stall the loop's other batches."""
    import threading

    loaded_in: list[threading.Thread] = []

    def champion() -> FakePipeline:
        loaded_in.append(threading.current_thread())
        return FakePipeline()

    settings = Settings(data_dir=tmp_path, allow_private_addresses=True, fetch_retries=0, verify_fraction=0.0)
    svc = Service(settings, store, champion)  # type: ignore[arg-type]
    [r] = classify(svc, "adv", f"{server}/img/off-loop.jpg?name=car")
    assert r.status == "ok"
    assert loaded_in
    assert all(t is not threading.main_thread() for t in loaded_in)  # asyncio.run's loop is the main thread's
