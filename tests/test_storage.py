"""The storage root: the same operations on a local folder (the default) and on S3 (moto's server,
started here on a free port); kept images, a dataset and a promoted model written by one process and
read by another that shares only the bucket and the database; paths the registry recorded before
the storage root existed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lotlens.champion import Champion
from lotlens.cli import app
from lotlens.config import Settings
from lotlens.errors import ConfigError, ManifestError, StorageError
from lotlens.keys import content_key
from lotlens.service import Item, Service
from lotlens.storage import INDEX, Storage
from lotlens.store import Store
from lotlens.store.images import ImageFolder
from lotlens.store.registry import Registry
from lotlens.train.dataset import create, latest_version, local_copy, read_meta, read_rows
from lotlens.train.registry import register
from lotlens.vision import Pipeline
from lotlens.vision.pipeline import ModelFolder, default_model_dir

from synth import variant

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3-secret-never-shown-1234"
runner = CliRunner()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 in server mode, on 127.0.0.1 and a free port: a real HTTP endpoint that other
    processes reach too."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _new_bucket(endpoint: str) -> str:
    import boto3

    name = f"lotlens-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key=SECRET
    )
    client.create_bucket(Bucket=name)
    return name


def s3_settings(tmp_path: Path, endpoint: str, bucket: str, name: str, **more: Any) -> Settings:
    """One process's settings: its own data folder (and so its own cache), the shared bucket."""
    return Settings(
        data_dir=tmp_path / name,
        storage_url=f"s3://{bucket}/lotlens",
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        s3_access_key_id="testing",
        s3_secret_access_key=SECRET,
        allow_private_addresses=True,
        **more,
    )


def s3_env(settings: Settings) -> dict[str, str]:
    """The same settings as a separate process reads them."""
    assert settings.s3_secret_access_key is not None
    return {
        "LOTLENS_DATA_DIR": str(settings.data_dir),
        "LOTLENS_STORAGE_URL": str(settings.storage_url),
        "LOTLENS_S3_ENDPOINT_URL": str(settings.s3_endpoint_url),
        "LOTLENS_S3_REGION": "us-east-1",
        "LOTLENS_S3_ACCESS_KEY_ID": "testing",
        "LOTLENS_S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key.get_secret_value(),
    }


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return Storage.from_settings(Settings(data_dir=tmp_path / "data"))
    endpoint = request.getfixturevalue("s3_endpoint")
    return Storage.from_settings(s3_settings(tmp_path, endpoint, _new_bucket(endpoint), "data"))


def test_files_and_folders(storage: Storage, tmp_path: Path) -> None:
    assert storage.get("images/ab/nothing") is None
    assert not storage.exists("images/ab/nothing")
    assert storage.files("images") == []
    storage.put("images/ab/one", b"1")
    storage.put_many({"images/cd/two": b"22", "images/cd/three": b"333"})
    assert storage.get("images/ab/one") == b"1"
    assert storage.exists("images/cd/two")
    assert storage.files("images") == ["images/ab/one", "images/cd/three", "images/cd/two"]
    assert storage.files("images/cd") == ["images/cd/three", "images/cd/two"]
    storage.delete("images/cd/two")
    assert storage.get("images/cd/two") is None
    storage.delete("images/cd")
    assert storage.files("images") == ["images/ab/one"]
    storage.delete("images/nothing-here")  # absent: nothing to do
    for bad in ("/etc/passwd", "../outside", "images/../../x", ""):
        with pytest.raises(StorageError, match="not a path inside"):
            storage.put(bad, b"x")

    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"a" * 1000)
    (src / "sub" / "b.json").write_bytes(b"{}")
    assert storage.put_folder("models/m-1", src)
    assert not storage.put_folder("models/m-1", {"other": b"x"})  # stored folders never change
    assert storage.put_folder("models/m-2", {"only.txt": b"hi"})
    assert storage.folders("models") == ["m-1", "m-2"]
    assert storage.has_folder("models/m-1")
    assert not storage.has_folder("models/m-3")
    assert storage.files("models/m-1") == ["models/m-1/FILES.sha256", "models/m-1/a.bin", "models/m-1/sub/b.json"]
    local = storage.local_folder("models/m-1")
    assert (local / "a.bin").read_bytes() == b"a" * 1000
    assert (local / "sub" / "b.json").read_bytes() == b"{}"
    assert storage.local_folder("models/m-1") == local  # the cached copy is reused
    if storage.local:
        assert local == Path(storage.url) / "models" / "m-1"  # read in place, never copied
    else:
        assert local.is_relative_to(storage.cache_dir)
        assert local.name.startswith("m-1-")  # keyed by version and the index's hash
    with pytest.raises(StorageError, match="no .*folder models/m-3"):
        storage.local_folder("models/m-3")
    root = storage.mirror(["models/m-2/only.txt", "images/ab/one", "images/ab/not-stored"])
    assert (root / "models/m-2/only.txt").read_bytes() == b"hi"
    assert (root / "images/ab/one").read_bytes() == b"1"
    assert not (root / "images/ab/not-stored").exists()


def test_a_remote_copy_that_does_not_match_its_index_is_refused(s3_endpoint: str, tmp_path: Path) -> None:
    settings = s3_settings(tmp_path, s3_endpoint, _new_bucket(s3_endpoint), "a")
    storage = Storage.from_settings(settings)
    storage.put_folder("models/m", {"heads.npz": b"good"})
    storage.put("models/m/heads.npz", b"tampered")  # behind the index's back
    with pytest.raises(StorageError, match="does not match its FILES.sha256"):
        storage.local_folder("models/m")
    assert not [p for p in (settings.resolved_cache_dir() / "models").iterdir() if not p.name.startswith(".")]


def test_an_unreachable_root_is_one_error_naming_the_setting(tmp_path: Path, s3_endpoint: str) -> None:
    settings = s3_settings(tmp_path, s3_endpoint, "no-such-bucket-here", "a")
    storage = Storage.from_settings(settings)
    with pytest.raises(StorageError) as err:
        storage.put("images/ab/x", b"x")
    assert str(err.value).startswith("LOTLENS_STORAGE_URL s3://no-such-bucket-here/lotlens: cannot write images/ab/x")
    assert SECRET not in str(err.value)
    assert SECRET not in repr(storage)


def test_kept_images_go_to_s3_and_a_storage_outage_never_fails_a_batch(
    s3_endpoint: str, tmp_path: Path, pipeline: Pipeline, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = _new_bucket(s3_endpoint)
    settings = s3_settings(tmp_path, s3_endpoint, bucket, "a")
    store = Store.from_url(settings.resolved_database_url())
    urls = [f"{server}/img/s3-{n}.jpg?name={n}" for n in ("car", "blue")]
    results = asyncio.run(Service(settings, store, lambda: pipeline).classify("a", [Item(u) for u in urls]))
    assert [r.status for r in results] == ["ok", "ok"]
    # Another process (its own settings and cache) reads the same bytes back from the bucket.
    other = ImageFolder(Storage.from_settings(s3_settings(tmp_path, s3_endpoint, bucket, "b")))
    for r in results:
        data = other.get(r.image_key)
        assert data is not None
        assert content_key(data) == r.image_key
    assert not (tmp_path / "a" / "images").exists()  # nothing kept on the local disk

    down = s3_settings(tmp_path, s3_endpoint, "no-such-bucket-here", "c")
    store_c = Store.from_url(down.resolved_database_url())
    res = asyncio.run(Service(down, store_c, lambda: pipeline).classify("a", [Item(f"{server}/img/s3-x.jpg?name=car")]))
    assert res[0].status == "ok"  # the answer is stored; only the kept bytes are missing
    assert store_c.answers([res[0].image_key], None)
    assert "kept images not written" in caplog.text


def test_a_model_promoted_by_one_process_is_loaded_by_another(
    s3_endpoint: str, tmp_path: Path, store_url: str, store: Store
) -> None:
    bucket = _new_bucket(s3_endpoint)
    db = store_url  # SQLite, and PostgreSQL as in production
    one = s3_settings(tmp_path, s3_endpoint, bucket, "one", database_url=db)
    rec = register(store, variant(tmp_path, "lotlens-s3", 0.4), one, "ana")
    assert rec.path == "models/lotlens-s3"
    Registry(store).promote(rec.version, actor="ana", reason="to the fleet")
    assert not (tmp_path / "one" / "models").exists()  # in the bucket, not on this host's disk

    # A second process: only the bucket and the database in common, its own data folder and cache.
    two = s3_settings(tmp_path, s3_endpoint, bucket, "two", database_url=db)
    script = (
        "import json; from lotlens.config import load; from lotlens.store import Store; "
        "from lotlens.champion import Champion; s = load(); "
        "c = Champion(s, Store.from_url(s.resolved_database_url(), migrate=False)); "
        "print(json.dumps({'version': c().version, 'folder': str(c().folder.path)}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOTLENS_")}
    env |= s3_env(two) | {"LOTLENS_DATABASE_URL": db}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["version"] == "lotlens-s3"
    folder = Path(seen["folder"])
    assert folder.is_relative_to(tmp_path / "two" / "cache" / "models")
    assert ModelFolder.read(folder).version == "lotlens-s3"
    assert SECRET not in proc.stderr  # its log lines never carry the key


def test_a_dataset_built_on_s3_is_read_back_elsewhere(
    s3_endpoint: str, tmp_path: Path, pipeline: Pipeline, server: str
) -> None:
    bucket = _new_bucket(s3_endpoint)
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    one = s3_settings(tmp_path, s3_endpoint, bucket, "one", database_url=db, dataset_test_size=0.5)
    store = Store.from_url(db)
    urls = [f"{server}/img/s3ds-{n}.jpg?name={n}" for n in ("car", "blue", "yellow")]
    results = asyncio.run(Service(one, store, lambda: pipeline).classify("a", [Item(u) for u in urls]))
    car_key, blue, yellow = (r.image_key for r in results)
    for key, fld, value in ((car_key, "type", "Stock"), (blue, "color", "Green"), (yellow, "type", "Placeholder")):
        store.add_fix(key, fld, value, actor="ana", role="staff", scope="global", advertiser=None)
    ImageFolder(Storage.from_settings(one)).storage.delete(ImageFolder.relpath(blue))  # gone: fetched again
    report = create(one, store)
    assert report.rows == 3
    assert not report.dropped

    two = s3_settings(tmp_path, s3_endpoint, bucket, "two", database_url=db)
    assert latest_version(two) == report.version
    rows = read_rows(two, report.version)
    assert {r.image_key for r in rows} == {car_key, blue, yellow}
    assert read_meta(two, report.version)["version"] == report.version
    folder, images_root = local_copy(two, report.version)
    assert folder.is_relative_to(tmp_path / "two" / "cache")
    assert (folder / "manifest.csv").read_bytes() == Storage.from_settings(two).get(
        f"datasets/{report.version}/manifest.csv"
    )
    for r in rows:  # what training reads: the manifest's paths under the local root
        assert content_key((images_root / r.path).read_bytes()) == r.image_key
    with pytest.raises(ManifestError, match="no dataset version"):
        read_rows(two, "ds-000000000000")


def test_paths_recorded_before_the_storage_root_still_load(
    tmp_path: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry once recorded `<data_dir>/models/<version>` as an absolute path."""
    old = Settings(data_dir=tmp_path / "old")
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite'}")
    target = (old.data_dir / "models" / "lotlens-old").resolve()
    shutil.copytree(variant(tmp_path, "lotlens-old", 0.4), target)  # as the old register did: no index
    Registry(store).add("lotlens-old", "old", str(target), {}, "ana")
    Registry(store).promote("lotlens-old", actor="ana", reason=None)
    champ = Champion(old, store, pipeline)
    assert champ.refresh()
    assert champ().version == "lotlens-old"
    assert champ().folder.path == target

    # The data folder moved to a new place (the recorded path is gone): read from the new root.
    moved = Settings(data_dir=tmp_path / "new")
    shutil.move(old.data_dir, moved.data_dir)
    champ = Champion(moved, store, pipeline)
    assert champ.refresh()
    assert champ().version == "lotlens-old"
    assert champ().folder.path == (moved.data_dir / "models" / "lotlens-old").resolve()


def test_registering_the_bundled_model_on_s3_through_the_cli(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = s3_settings(tmp_path, s3_endpoint, _new_bucket(s3_endpoint), "cli")
    for k, v in s3_env(settings).items():
        monkeypatch.setenv(k, v)
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0, res.output
    bundled = ModelFolder.read(default_model_dir()).version
    assert Storage.from_settings(settings).has_folder(f"models/{bundled}")
    assert Storage.from_settings(settings).get(f"models/{bundled}/{INDEX}") is not None
    shown = runner.invoke(app, ["config", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    values = json.loads(shown.stdout)["settings"]
    assert values["LOTLENS_STORAGE_URL"] == settings.storage_url
    assert values["LOTLENS_S3_SECRET_ACCESS_KEY"] == "***"
    assert SECRET not in shown.output
    assert SECRET not in res.output


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://host/data", "must be a folder, file:///PATH or s3://BUCKET[/PREFIX]"),
        (f"s3://AKIAKEY:{SECRET}@bucket/prefix", "credentials go in LOTLENS_S3_* or AWS_* variables"),
        ("s3:///no-bucket", "must be s3://BUCKET[/PREFIX]"),
    ],
)
def test_a_bad_storage_url_is_one_line_naming_the_variable(
    url: str, rule: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOTLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOTLENS_STORAGE_URL", url)
    for command in (["config", "show"], ["serve"], ["db", "upgrade"]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2, res.output
        [line] = res.stderr.strip().splitlines()
        assert line.startswith("error: LOTLENS_STORAGE_URL: ")
        assert rule in line
        assert SECRET not in res.output


def test_the_default_root_is_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(data_dir=tmp_path / "d").resolved_storage_url() == str((tmp_path / "d").resolve())
    assert Settings(storage_url=f"file://{tmp_path}/x").resolved_storage_url() == str(tmp_path / "x")
    assert Settings(storage_url="s3://bucket/a/b/").resolved_storage_url() == "s3://bucket/a/b"
    assert Settings(data_dir=tmp_path / "d").resolved_cache_dir() == (tmp_path / "d" / "cache").resolve()


def test_s3_without_the_extra_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "s3fs" else real(name, *a))
    with pytest.raises(ConfigError, match=r"LOTLENS_STORAGE_URL: s3:// needs the s3 extra"):
        Storage.from_settings(Settings(data_dir=tmp_path, storage_url="s3://bucket/prefix"))
