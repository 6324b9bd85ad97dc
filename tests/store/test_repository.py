"""The cache and fix repository, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import gc
import random
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from lotlens.labels import COLORS
from lotlens.store import Store
from lotlens.store.records import HostTrust, UrlRecord, UrlSeen

K1, K2 = "c:" + "1" * 64, "c:" + "2" * 64
SCORES = {"type": {"Dealer": 0.9, "Stock": 0.05, "Placeholder": 0.05}, "color": {"Red": 0.8}}


def _predict(store: Store, key: str, version: str = "m1", type_: str = "Dealer", color: str | None = "Red") -> None:
    store.put_image(key, phash=123)
    store.put_prediction(key, version, type_, color, SCORES, [1, 2, 30, 40])


def test_migrations_create_every_table(store: Store) -> None:
    names = set(inspect(store.engine).get_table_names())
    assert {"images", "header_keys", "sightings", "predictions", "fixes", "hosts", "alembic_version"} <= names


def test_upgrade_twice_is_a_no_op(store_url: str) -> None:
    Store.from_url(store_url).engine.dispose()
    again = Store.from_url(store_url)
    from importlib import resources

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("lotlens.store") / "migrations"))
    with again.engine.connect() as c:
        assert (
            c.execute(text("select version_num from alembic_version")).scalar()
            == ScriptDirectory.from_config(cfg).get_current_head()
        )
    again.engine.dispose()


def test_prediction_is_the_answer_until_fixed(store: Store) -> None:
    _predict(store, K1)
    a = store.answers([K1, K2], "adv-a")
    assert set(a) == {K1}
    assert (a[K1].type, a[K1].color, a[K1].source, a[K1].model_version) == ("Dealer", "Red", "model", "m1")
    assert a[K1].box == [1, 2, 30, 40]
    assert a[K1].scores == SCORES


def test_newest_prediction_wins(store: Store) -> None:
    _predict(store, K1, "m1", "Dealer", "Red")
    store.put_prediction(K1, "m2", "Stock", "Blue", SCORES)
    assert store.answers([K1], None)[K1].model_version == "m2"
    assert store.answers([K1], None)[K1].color == "Blue"


def test_placeholder_has_no_color_and_legacy_na_reads_as_null(store: Store) -> None:
    _predict(store, K1, type_="Placeholder", color=None)
    assert store.answers([K1], None)[K1].color is None
    store.put_image(K2)
    with store.engine.begin() as c:  # a row as the old system wrote it
        c.execute(
            text(
                "insert into predictions (content_key, model_version, type, color, scores, created_at) "
                "values (:k, 'legacy', 'Dealer', 'N/A', '{}', :t)"
            ),
            {"k": K2, "t": datetime.now(UTC)},
        )
    assert store.answers([K2], None)[K2].color is None


def test_advertiser_fix_beats_global_fix_beats_prediction(store: Store) -> None:
    _predict(store, K1)
    g = store.add_fix(K1, "color", "Blue", actor="staff-1", role="staff", scope="global", advertiser=None)
    assert (g.old_value, g.new_value) == ("Red", "Blue")
    a = store.add_fix(K1, "color", "Green", actor="dealer-a", role="advertiser:a", scope="advertiser", advertiser="a")
    assert a.old_value == "Blue"  # what advertiser a saw when fixing
    assert store.answers([K1], "a")[K1].color == "Green"
    assert store.answers([K1], "b")[K1].color == "Blue"  # b sees the staff answer, not a's fix
    assert store.answers([K1], "b")[K1].source == "manual"
    assert store.answers([K1], "b")[K1].manual == ("color",)
    # A later global fix does not undo a's own fix in a's view.
    store.add_fix(K1, "color", "Black", actor="staff-1", role="staff", scope="global", advertiser=None)
    assert store.answers([K1], "a")[K1].color == "Green"
    assert store.answers([K1], "b")[K1].color == "Black"


def test_type_fix_to_placeholder_clears_color(store: Store) -> None:
    _predict(store, K1)
    store.add_fix(K1, "type", "Placeholder", actor="x", role="staff", scope="global", advertiser=None)
    ans = store.answers([K1], "a")[K1]
    assert (ans.type, ans.color) == ("Placeholder", None)


def test_a_fix_without_prediction_is_an_answer(store: Store) -> None:
    store.put_image(K2)
    store.add_fix(K2, "type", "Stock", actor="x", role="staff", scope="global", advertiser=None)
    ans = store.answers([K2], None)[K2]
    assert (ans.type, ans.source, ans.model_version) == ("Stock", "manual", None)


def test_prediction_after_fix_never_overrides_it(store: Store) -> None:
    _predict(store, K1, "m1")
    store.add_fix(K1, "type", "Stock", actor="x", role="staff", scope="global", advertiser=None)
    store.put_prediction(K1, "m2", "Placeholder", None, SCORES)  # finishes after the fix
    assert store.answers([K1], None)[K1].type == "Stock"


@pytest.mark.parametrize(
    ("field", "value", "scope", "advertiser", "error"),
    [
        ("size", "x", "global", None, ValueError),
        ("type", "Car", "global", None, ValueError),
        ("color", "Teal", "global", None, ValueError),
        ("color", "Red", "everyone", None, ValueError),
        ("color", "Red", "advertiser", None, ValueError),
    ],
)
def test_bad_fixes_are_refused(
    store: Store, field: str, value: str, scope: str, advertiser: str | None, error: type[Exception]
) -> None:
    _predict(store, K1)
    with pytest.raises(error):
        store.add_fix(K1, field, value, actor="x", role="staff", scope=scope, advertiser=advertiser)
    assert store.fixes() == []


def test_fix_of_unknown_image(store: Store) -> None:
    with pytest.raises(KeyError):
        store.add_fix(K2, "type", "Stock", actor="x", role="staff", scope="global", advertiser=None)


def test_history_is_append_only_in_the_database(store: Store) -> None:
    _predict(store, K1)
    store.add_fix(K1, "type", "Stock", actor="x", role="staff", scope="global", advertiser=None)
    for sql in ("update fixes set new_value = 'Dealer'", "delete from fixes"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
            c.execute(text(sql))
    assert [f.new_value for f in store.fixes()] == ["Stock"]


def test_history_filters(store: Store) -> None:
    _predict(store, K1)
    _predict(store, K2)
    store.add_fix(
        K1, "type", "Stock", actor="a1", role="advertiser:a", scope="advertiser", advertiser="a", comment="studio shot"
    )
    store.add_fix(K2, "color", "Blue", actor="b1", role="advertiser:b", scope="advertiser", advertiser="b")
    store.add_fix(K2, "type", "Dealer", actor="s", role="staff", scope="global", advertiser=None)
    history = store.fixes()
    assert [(f.actor, f.field) for f in history] == [("a1", "type"), ("b1", "color"), ("s", "type")]
    assert history[0].comment == "studio shot"
    assert history[0].created_at <= history[1].created_at <= history[2].created_at
    assert [f.actor for f in store.fixes(advertiser="a")] == ["a1", "s"]
    assert [f.actor for f in store.fixes(content_key=K2)] == ["b1", "s"]
    assert store.fixes(since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_header_keys_and_trust(store: Store) -> None:
    store.put_image(K1)
    store.put_image(K2)
    assert store.remember_header_key("h:1", K1, "cdn.x", "https://cdn.x/1.jpg") is None
    assert store.remember_header_key("h:1", K1, "cdn.x", "https://cdn.x/1.jpg") is None
    assert store.lookup_header_keys(["h:1", "h:2"]) == {"h:1": K1}
    assert store.lookup_header_keys([]) == {}
    # Keys are hashes; one with the separator PostgreSQL's lookups join them with still matches exactly.
    assert store.remember_header_key("h:odd\nkey", K2, "cdn.x", "https://cdn.x/2.jpg") is None
    assert store.lookup_header_keys(["h:odd\nkey", "h:odd", "key", "h:1"]) == {"h:odd\nkey": K2, "h:1": K1}
    # One header key, different bytes: the caller learns what it served before.
    assert store.remember_header_key("h:1", K2, "cdn.x", "https://cdn.x/1.jpg") == K1
    assert store.host_trusted("cdn.x")
    assert store.distrust_host("cdn.x", "header key served new bytes")
    assert not store.distrust_host("cdn.x", "again")
    assert not store.host_trusted("cdn.x")
    assert store.host_trusted("other.cdn")


def _seen(url: str, key: str, before: UrlRecord | None, fetched: bool = True, etag: str = '"e1"') -> UrlSeen:
    return UrlSeen(url, "cdn.x", key, before, fetched, "h:" + (url + etag).encode().hex()[-64:], etag, None)


def test_url_index_remembers_validators_and_counts_checks(store: Store) -> None:
    store.put_image(K1)
    url = "https://cdn.x/1.jpg"
    assert store.lookup_urls([url]) == {}
    store.learn_urls([_seen(url, K1, None)], url_trust_checks=0)
    rec = store.lookup_urls([url, "https://cdn.x/other.jpg"])[url]
    assert (rec.content_key, rec.etag, rec.checks) == (K1, '"e1"', 0)
    assert rec.header_key
    assert rec.header_key.startswith("h:")
    store.learn_urls([_seen(url, K1, rec, fetched=False)], url_trust_checks=0)  # a 304
    again = store.lookup_urls([url])[url]
    assert (again.checks, again.header_key, again.etag) == (1, rec.header_key, '"e1"')
    assert store.header_keys_of(K1)[0].url == url


def test_url_trust_is_earned_after_enough_checks_and_lost_for_good_on_a_change(store: Store) -> None:
    store.put_image(K1)
    store.put_image(K2)
    urls = [f"https://cdn.x/{i}.jpg" for i in range(3)]
    store.learn_urls([_seen(u, K1, None) for u in urls], url_trust_checks=5)
    assert store.host_trust(["cdn.x", "new.cdn"]) == {"cdn.x": HostTrust(True, False), "new.cdn": HostTrust()}
    known = store.lookup_urls(urls)
    lessons = store.learn_urls([_seen(u, K1, known[u], fetched=False) for u in urls], url_trust_checks=5)
    assert lessons.url_trust_earned == []  # 3 checks of 5
    known = store.lookup_urls(urls)
    lessons = store.learn_urls([_seen(u, K1, known[u]) for u in urls], url_trust_checks=5)  # same bytes, whole
    assert lessons.url_trust_earned == ["cdn.x"]
    assert store.host_trust(["cdn.x"])["cdn.x"] == HostTrust(True, True)
    # New bytes under a known URL (with a new ETag: the headers stay trusted): URL trust is lost.
    known = store.lookup_urls(urls)
    lessons = store.learn_urls([_seen(urls[0], K2, known[urls[0]], etag='"e2"')], url_trust_checks=5)
    assert (lessons.url_trust_lost, lessons.headers_distrusted) == (["cdn.x"], [])
    assert store.host_trust(["cdn.x"])["cdn.x"] == HostTrust(True, False)
    assert store.lookup_urls(urls)[urls[0]].content_key == K2
    for _ in range(3):  # and is not earned again
        known = store.lookup_urls(urls)
        lessons = store.learn_urls([_seen(u, known[u].content_key, known[u], fetched=False) for u in urls], 5)
        assert lessons.url_trust_earned == []
    assert not store.host_trust(["cdn.x"])["cdn.x"].urls


def test_header_lessons_of_the_url_index(store: Store) -> None:
    store.put_image(K1)
    store.put_image(K2)
    a, b = "https://a.cdn/1.jpg", "https://b.cdn/1.jpg"
    store.learn_urls([replace(_seen(a, K1, None), host="a.cdn"), replace(_seen(b, K1, None), host="b.cdn")], 0)
    known = store.lookup_urls([a, b])
    lessons = store.learn_urls(
        [
            replace(_seen(a, K2, known[a]), host="a.cdn"),  # the same header key, new bytes
            replace(_seen(b, K1, known[b], etag='"e9"'), host="b.cdn"),  # a new header key, the same bytes
        ],
        url_trust_checks=0,
    )
    assert dict(lessons.headers_distrusted) == {
        "a.cdn": "a header key served different bytes",
        "b.cdn": "the header key changed while the bytes did not",
    }
    assert not store.host_trust(["a.cdn"])["a.cdn"].headers
    assert store.learn_urls([replace(_seen(b, K1, None), host="b.cdn")], 0).headers_distrusted == []


def test_lookups_take_thousands_of_keys(store: Store) -> None:
    """A query per 1,000 keys, one bind parameter each: past SQLite's and PostgreSQL's variable limits."""
    store.put_image(K1)
    urls = [f"https://cdn.x/{i}.jpg" for i in range(2500)]
    store.learn_urls([_seen(u, K1, None) for u in urls], url_trust_checks=0)
    asked = urls[::2] + [f"https://cdn.x/missing/{i}.jpg" for i in range(1500)]
    found = store.lookup_urls(asked)
    assert set(found) == set(urls[::2])
    assert {r.content_key for r in found.values()} == {K1}
    headers = {r.header_key for r in found.values()}
    assert set(store.lookup_header_keys([*headers, "h:nope"]).values()) == {K1}
    assert len(store.lookup_header_keys(headers)) == 1250


def test_inventory_and_near_duplicate_candidates(store: Store) -> None:
    _predict(store, K1)
    _predict(store, K2)
    store.see("a", "https://cdn.x/1.jpg", K1, "v1")
    store.see("a", "https://cdn.x/2.jpg", K2)
    store.see("b", "https://cdn.x/1.jpg", K1)
    assert set(store.inventory("a")) == {K1, K2}
    assert store.inventory("b") == [K1]
    store.add_fix(K1, "color", "Blue", actor="a1", role="advertiser:a", scope="advertiser", advertiser="a")
    assert store.fixed_phashes("a") == [(K1, 123)]
    assert store.fixed_phashes("b") == []


def test_concurrent_predictions_and_fixes_keep_every_fix(store: Store) -> None:
    """Randomised interleavings: whatever order they land in, the last fix is the answer."""
    keys = [f"c:{i:064x}" for i in range(6)]
    for k in keys:
        store.put_image(k)
    rng = random.Random(11)
    expected: dict[str, str] = {}
    lock = threading.Lock()

    def predictor(n: int) -> None:
        r = random.Random(n)
        for i in range(12):
            k = r.choice(keys)
            # photos only: a placeholder's color is None whatever the fixes say, which this test is not about
            store.put_prediction(k, f"m{n}-{i}", r.choice(("Dealer", "Stock")), r.choice(COLORS), SCORES)

    def fixer() -> None:
        for _ in range(12):
            k = rng.choice(keys)
            color = rng.choice(COLORS)
            with lock:  # the fixes themselves are ordered; predictions race against them
                store.add_fix(k, "color", color, actor="s", role="staff", scope="global", advertiser=None)
                expected[k] = color

    threads = [threading.Thread(target=predictor, args=(n,)) for n in range(3)] + [threading.Thread(target=fixer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = store.answers(keys, None)
    for k, color in expected.items():
        assert answers[k].color == color
        assert "color" in answers[k].manual


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_store_survives_its_connections_being_killed(store: Store) -> None:
    """A database restart drops every connection; the next call reconnects and nothing is lost."""
    _predict(store, K1)
    store.add_fix(K1, "type", "Stock", actor="x", role="staff", scope="global", advertiser=None)
    if store.engine.dialect.name == "postgresql":
        # Kill the store's pooled connections from another session, as a server restart would.
        other = create_engine(store.engine.url)
        with other.connect() as c:
            killed = c.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        other.dispose()
        assert killed >= 1
    else:
        store.engine.dispose()  # SQLite: every connection closed, the file stays
    assert store.answers([K1], None)[K1].type == "Stock"
    store.add_fix(K1, "type", "Dealer", actor="x", role="staff", scope="global", advertiser=None)
    assert [f.new_value for f in store.fixes()] == ["Stock", "Dealer"]
    store.engine.dispose()
    gc.collect()  # the killed connections' objects go now, inside this test, not in a later one


def test_listing_shows_sources_and_skips_and_forgets_a_skip_once_answered(store: Store) -> None:
    _predict(store, K1)
    _predict(store, K2)
    store.see_many("a", [("https://cdn.x/1.jpg", K1, "v1", "model"), ("https://cdn.x/2.jpg", K2, None, "cache")])
    store.skip_many("a", [("https://cdn.x/3.jpg", "http_404", "v3"), ("https://cdn.x/2.jpg", "timeout", None)])
    store.skip_many("b", [("https://cdn.x/9.jpg", "dns", None)])
    rows = {r.url: r for r in store.listing("a")}
    assert set(rows) == {"https://cdn.x/1.jpg", "https://cdn.x/2.jpg", "https://cdn.x/3.jpg"}
    assert (rows["https://cdn.x/1.jpg"].source, rows["https://cdn.x/1.jpg"].skipped) == ("model", None)
    # a URL answered before and skipped now keeps its image and says why the latest scrape failed
    assert (rows["https://cdn.x/2.jpg"].content_key, rows["https://cdn.x/2.jpg"].skipped) == (K2, "timeout")
    assert (rows["https://cdn.x/3.jpg"].content_key, rows["https://cdn.x/3.jpg"].skipped) == (None, "http_404")
    assert rows["https://cdn.x/3.jpg"].vehicle_id == "v3"
    store.skip_many("a", [("https://cdn.x/3.jpg", "http_410", None)])  # skipped again: one row, latest reason
    assert [r.skipped for r in store.listing("a") if r.url.endswith("3.jpg")] == ["http_410"]
    store.see_many("a", [("https://cdn.x/3.jpg", K1, None, "cache"), ("https://cdn.x/2.jpg", K2, None, "manual")])
    rows = {r.url: r for r in store.listing("a")}
    assert all(r.skipped is None for r in rows.values())
    assert (rows["https://cdn.x/3.jpg"].vehicle_id, rows["https://cdn.x/2.jpg"].source) == ("v3", "manual")
    assert [r.url for r in store.listing("b")] == ["https://cdn.x/9.jpg"]
    summary = {adv: (n, skipped) for adv, n, skipped, _last in store.advertisers()}
    assert summary == {"a": (3, 0), "b": (0, 1)}


def test_inventory_versions_are_each_advertisers_inventory_version_in_one_go(store: Store) -> None:
    assert store.inventory_versions() == {}
    _predict(store, K1)
    store.see_many("a", [("https://cdn.x/1.jpg", K1, "v1", "model")])
    store.skip_many("a", [("https://cdn.x/3.jpg", "http_404", None)])
    store.skip_many("b", [("https://cdn.x/9.jpg", "dns", None)])  # skips only
    store.see("c", "https://cdn.z/1.jpg", K1)  # sightings only
    before = store.inventory_versions()
    assert before == {adv: store.inventory_version(adv) for adv in ("a", "b", "c")}
    store.see("c", "https://cdn.z/2.jpg", K1)  # c changes, a and b do not
    after = store.inventory_versions()
    assert (after["a"], after["b"]) == (before["a"], before["b"])
    assert after["c"] != before["c"]
    assert after == {adv: store.inventory_version(adv) for adv in ("a", "b", "c")}
    store.add_fix(K1, "color", "Blue", actor="ana", role="staff", scope="global", advertiser=None)
    fixed = store.inventory_versions()  # a fix can change any advertiser's answers: every version moves
    assert all(fixed[adv] != after[adv] for adv in after)
    assert fixed == {adv: store.inventory_version(adv) for adv in ("a", "b", "c")}


def test_image_details_for_the_image_page(store: Store) -> None:
    _predict(store, K1, "m1", "Dealer", "Red")
    _predict(store, K1, "m2", "Stock", "Blue")
    store.see("a", "https://cdn.x/1.jpg", K1)
    store.see("b", "https://cdn.y/1.jpg?w=800", K1)
    store.remember_header_key("h:" + "9" * 64, K1, "cdn.x", "https://cdn.x/1.jpg")
    info = store.image_info(K1)
    assert info is not None
    assert info.phash == 123
    assert store.image_info(K2) is None
    assert [(p.model_version, p.type, p.color, p.box) for p in store.predictions(K1)] == [
        ("m1", "Dealer", "Red", [1, 2, 30, 40]),
        ("m2", "Stock", "Blue", [1, 2, 30, 40]),
    ]
    assert [s.advertiser for s in store.sightings_of(K1)] == ["a", "b"]
    assert [s.url for s in store.sightings_of(K1, advertiser="b")] == ["https://cdn.y/1.jpg?w=800"]
    assert [(h.host, h.url) for h in store.header_keys_of(K1)] == [("cdn.x", "https://cdn.x/1.jpg")]


def test_fix_history_filters(store: Store) -> None:
    _predict(store, K1)
    _predict(store, K2)
    store.add_fix(K1, "type", "Stock", actor="a1", role="advertiser:a", scope="advertiser", advertiser="a")
    store.add_fix(K2, "color", "Blue", actor="s", role="staff", scope="global", advertiser="b")
    store.add_fix(K2, "type", "Placeholder", actor="b1", role="advertiser:b", scope="advertiser", advertiser="b")
    assert [f.actor for f in store.fixes(actor="s")] == ["s"]
    assert [f.field for f in store.fixes(field="type")] == ["type", "type"]
    assert [f.actor for f in store.fixes(advertiser="a")] == ["a1", "s"]  # its own and the global ones
    assert [f.actor for f in store.fixes(advertiser="b", own_only=True)] == ["s", "b1"]
    store.see("a", "https://cdn.x/1.jpg", K1)
    assert [f.actor for f in store.fixes(advertiser="a", shown_by="a")] == ["a1"]  # s fixed K2, which a never showed
    store.see("a", "https://cdn.x/2.jpg", K2)
    assert [f.actor for f in store.fixes(advertiser="a", shown_by="a")] == ["a1", "s"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert len(store.fixes(until=later)) == 3
    assert store.fixes(until=datetime.now(UTC) - timedelta(minutes=1)) == []


def test_answers_for_more_keys_than_one_statement_takes(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from lotlens.store import repository

    monkeypatch.setattr(repository, "CHUNK", 2)
    keys = [f"c:{i:064x}" for i in range(5)]
    for k in keys:
        _predict(store, k)
    assert set(store.answers(keys, None)) == set(keys)


def test_tables_match_the_migrations(store: Store) -> None:
    """The ORM tables and the Alembic head describe the same schema (no migration forgotten)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lotlens.store.tables import Base

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
