#!/usr/bin/env python
"""Issue #13 experiment: fine-tune the backbone's last stage(s) on vehicle crops, in grouped CV.

Does a Lite0 whose last MBConv stage(s) + conv_head are fine-tuned on the training folds' crops
give the color head a better 1280-d embedding than the frozen ImageNet one? Everything else is
scripts/cv-color's: the same cache (build/cv/), the same crops (the detector / white-background
box the Featurizer chose, or the whole image), the same 5 grouped folds, the same color head
fitting ("wb regions": crop embedding + histograms head, band_wb and center_wb heads, logits
averaged; temperature on the same inner split). Only the first 1280 columns of the crop block
change: frozen (onnx, as cached) against fine-tuned (per fold, never seeing its test fold).

Design (cheap on 2 CPU cores): the frozen trunk runs once per crop and its horizontal flip, up to
the input of stage 6 (block 11, 112 x 14 x 14, float16, build/cv/finetune/trunk.npz); the frozen
blocks 11-14 then give stage 7's input (192 x 7 x 7). Per fold: a 12-way linear head is first
fitted on the frozen tail (linear probe), then tail + head train together (Adam, BatchNorm in
eval mode with its affine parameters free, decoupled weight decay pulling the tail back to its
ImageNet weights, sqrt-balanced class weights, random flip, dropout before the head), with early
stopping on the inner validation groups of the training folds (cv-color's inner_split, the split
its temperature uses); epoch 0 is the linear probe alone, so "no fine-tuning" can win.

Reproduce (after `nice -n 19 .venv/bin/python scripts/cv-color features`; needs the `export`
extra: `nice -n 19 .venv/bin/pip install -e '.[export]'`):

    nice -n 19 .venv/bin/python scripts/cv_finetune.py trunk            # 5-10 min: trunk activations
    nice -n 19 .venv/bin/python scripts/cv_finetune.py run --tail 1     # last stage (block 15 + conv_head)
    nice -n 19 .venv/bin/python scripts/cv_finetune.py run --tail 2 --lr 1e-4 --epochs 6 --patience 2  # last two stages
    nice -n 19 .venv/bin/python scripts/cv_finetune.py compare --tail 1 # per fold, and the paired test
    nice -n 19 .venv/bin/python scripts/cv_finetune.py timing           # serving cost of each tail (onnxruntime)

Results (2026-12-03, 2446 colored crops, 5 grouped folds, "wb regions" head with --calibrate):

    frozen (onnx embedding, as cv-color)    top-1 0.8659  dev 0.8934  Grey 0.800 White 0.880 Black 0.801
    frozen (torch tail on the fp16 cache)   top-1 0.8663 (tail 1) / 0.8675 (tail 2): the noise floor
    fine-tuned last stage (tail 1, defaults)    top-1 0.8708  dev 0.8903  Grey 0.797 White 0.891 Black 0.816
        paired: 44 rows only fine-tuned right, 32 only frozen right, two-sided p 0.21 (not significant)
        type head on the fine-tuned whole-image embedding: 0.9483 against 0.9634 frozen
    fine-tuned last two stages (tail 2; --lr 1e-4 --epochs 6 --patience 2)
                                            top-1 0.8675  dev 0.8840  Grey 0.811 White 0.891 Black 0.783
        paired: 37 only fine-tuned right, 33 only frozen right, p 0.72; type head 0.9593 (frozen 0.9634)
        (--lr 3e-4 for tail 2 fell to val top-1 0.57 by epoch 2 of fold 0; that run was stopped)
    scripts/cv-color run --calibrate --only "wb regions" on this same cache: 0.866, Grey/White/Black
        0.80/0.88/0.80, the first row above.
    tail 1 with an unregularised probe head (v1: head_wd 1e-4 raw, no smoothing, early stop on loss):
        the probe head already fits its training crops (train CE ~0.1), early stopping keeps epoch 0
        (the frozen tail) in every fold: identical to frozen.
    serving cost (onnxruntime, 1 thread, best of 7, busy shared machine): tail 1 ~1 ms per crop,
        tail 2 ~4-6 ms, the whole backbone ~11 ms.

`run` prints frozen vs fine-tuned color top-1 and Grey/White/Black recall, and the type head's
CV accuracy with the whole-image embedding from the fine-tuned tails (informative only: the plan
keeps the frozen tail for type). The fine-tuned embeddings are saved under build/cv/finetune/.
"""

from __future__ import annotations

import argparse
import copy
import importlib.machinery
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import export_backbone as eb  # scripts/ is on the path when this script runs
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lotlens.imaging import MODEL_SIDE, crop, decode
from lotlens.labels import COLORS, PLACEHOLDER, TYPES
from lotlens.train import generate
from lotlens.train.fit import _roundtrip, choose_placeholder_threshold
from lotlens.train.metrics import calibration, classification, fit_temperature
from lotlens.vision.backbone import FEATURES, preprocess
from lotlens.vision.heads import LinearHead
from lotlens.vision.pipeline import decide_types


def _load_cv_color() -> Any:
    path = Path(__file__).resolve().parent / "cv-color"
    loader = importlib.machinery.SourceFileLoader("cv_color", str(path))
    spec = importlib.util.spec_from_loader("cv_color", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cv_color"] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


cv = _load_cv_color()
OUT = cv.CACHE / "finetune"
SPLIT = 11  # the trunk's cached output: the input of block 11 (stage 6), 112 x 14 x 14
STAGE7 = 15  # the last stage's one block; its input is 192 x 7 x 7
SPEC = cv.METHODS["wb regions"]


def threads() -> None:
    torch.set_num_threads(2)
    torch.set_num_interop_threads(1)


def lite0() -> eb.Lite0:
    model = eb.load(True)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))  # fixes the SAME pads for 224 inputs
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def trunk(model: eb.Lite0, x: torch.Tensor, stop: int = SPLIT) -> torch.Tensor:
    x = F.relu6(model._bn0(model._conv_stem(x)))
    for b in model._blocks[:stop]:
        x = b(x)
    return x


class Tail(nn.Module):
    """Blocks `start`.. of Lite0, conv_head, BN, ReLU6 and the mean pool: the 1280-d embedding."""

    def __init__(self, model: eb.Lite0, start: int) -> None:
        super().__init__()
        self.start = start
        self.blocks = nn.ModuleList(copy.deepcopy(list(model._blocks[start:])))
        self.conv_head = copy.deepcopy(model._conv_head)
        self.bn1 = copy.deepcopy(model._bn1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return F.relu6(self.bn1(self.conv_head(x))).mean(dim=(2, 3))


# ---------------------------------------------------------------------------------------------- trunk


def cmd_trunk(args: argparse.Namespace) -> None:
    """Cache the trunk output for every colored crop (and its flip), every typed whole image and
    the generated placeholders, plus the torch-frozen embeddings to check against the onnx ones."""
    threads()
    d = cv.load()
    model = lite0().eval()
    colored = np.flatnonzero((d["color"] != "") & (d["type"] != PLACEHOLDER))
    typed = np.flatnonzero(d["type"] != "")
    crop_act = np.zeros((len(colored), 2, 112, 14, 14), np.float16)
    whole_act = np.zeros((len(typed), 112, 14, 14), np.float16)
    crop_emb = np.zeros((len(colored), FEATURES), np.float32)
    pos_c = {int(i): n for n, i in enumerate(colored)}
    pos_t = {int(i): n for n, i in enumerate(typed)}
    todo = sorted(set(colored.tolist()) | set(typed.tolist()))
    t0 = time.time()
    batch: list[tuple[str, int, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        x = torch.from_numpy(np.concatenate([b[2] for b in batch]))
        with torch.no_grad():
            a = trunk(model, x)
            emb = F.relu6(model._bn1(model._conv_head(trunk_rest(model, a)))).mean(dim=(2, 3))
        a16 = a.numpy().astype(np.float16)
        for (kind, pos, _), act, e in zip(batch, a16, emb.numpy(), strict=True):
            if kind == "crop":
                crop_act[pos, 0] = act
                crop_emb[pos] = e
            elif kind == "flip":
                crop_act[pos, 1] = act
            else:
                whole_act[pos] = act
        batch.clear()

    for n, i in enumerate(todo):
        if n % 200 == 0:
            print(f"trunk: {n}/{len(todo)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
        source = str(d["source"][i])
        image = decode((cv.DATA / source / str(d["path"][i])).read_bytes(), min_side=MODEL_SIDE)
        if i in pos_c:
            box = tuple(int(v) for v in d["box"][i])
            cropped = image if box[0] < 0 else crop(image, box)  # as cv-color's crop_to
            x = preprocess([cropped])
            batch += [("crop", pos_c[i], x), ("flip", pos_c[i], np.ascontiguousarray(x[..., ::-1]))]
        if i in pos_t:
            batch.append(("whole", pos_t[i], preprocess([image])))
        if len(batch) >= 16:
            flush()
    flush()
    rng = random.Random(0)  # cv-color's extract_generated: the same images, in the same order
    gen = [_roundtrip(im, rng) for _, im in generate.placeholders(300, 0)]
    gen_act = []
    for k in range(0, len(gen), 16):
        with torch.no_grad():
            gen_act.append(trunk(model, torch.from_numpy(preprocess(gen[k : k + 16]))).numpy().astype(np.float16))
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(
        OUT / "trunk.npz",
        colored=colored,
        typed=typed,
        crop_act=crop_act,
        whole_act=whole_act,
        gen_act=np.concatenate(gen_act),
        crop_emb=crop_emb,
    )
    diff = np.abs(crop_emb - d["color_x"][colored, :FEATURES])
    print(
        f"trunk: {len(todo)} images in {time.time() - t0:.0f}s; torch vs onnx embedding: "
        f"max |diff| {diff.max():.4f}, mean {diff.mean():.5f}",
        file=sys.stderr,
    )


def trunk_rest(model: eb.Lite0, a: torch.Tensor) -> torch.Tensor:
    for b in model._blocks[SPLIT:]:
        a = b(a)
    return a


# ------------------------------------------------------------------------------------------ fine-tune


def tail_input(model: eb.Lite0, act: np.ndarray, tail: int) -> torch.Tensor:
    """What the tail reads: the cached trunk output (tail 2) or it through frozen blocks 11-14 (tail 1)."""
    x = torch.from_numpy(act.reshape(-1, *act.shape[-3:]))
    if tail == 2:
        return x.reshape(*act.shape[:-3], *x.shape[1:])
    out = []
    with torch.no_grad():
        for k in range(0, len(x), 256):
            a = x[k : k + 256].float()
            for b in model._blocks[SPLIT:STAGE7]:
                a = b(a)
            out.append(a.half())
    y = torch.cat(out)
    return y.reshape(*act.shape[:-3], *y.shape[1:])


def embed(tail: Tail, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    tail.eval()
    with torch.no_grad():
        return torch.cat([tail(x[k : k + batch].float()) for k in range(0, len(x), batch)])


def class_weights(y: np.ndarray) -> torch.Tensor:
    counts = np.bincount(y, minlength=len(COLORS)).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    w *= counts.sum() / (w * counts).sum()
    return torch.tensor(w, dtype=torch.float32)


class Head(nn.Module):
    """The 12-way linear head on standardised embeddings (mean and scale of the frozen ones, fixed)."""

    def __init__(self, emb: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", emb.mean(0))
        self.register_buffer("scale", emb.std(0).clamp_min(1e-3))
        self.linear = nn.Linear(FEATURES, len(COLORS))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.linear((emb - self.mean) / self.scale)

    def penalty(self) -> torch.Tensor:
        return self.linear.weight.pow(2).sum()


def linear_probe(
    emb: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, args: argparse.Namespace, steps: int = 300
) -> Head:
    """The head on frozen embeddings (full batch Adam), so fine-tuning starts from a fitted head.

    It must stay regularised (`--head-wd`, label smoothing): a head that already fits its training
    crops leaves the tail no gradient to learn from.
    """
    torch.manual_seed(0)
    head = Head(emb)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        ce = F.cross_entropy(head(emb), y, weight=weight, label_smoothing=args.smoothing)
        loss = ce + args.head_wd * head.penalty()
        loss.backward()
        opt.step()
    print(f"    probe: train CE {float(ce):.3f}", file=sys.stderr, flush=True)
    return head


def score(entry: dict[str, float], select: str) -> float:
    """Lower is better: the validation loss, or minus the validation top-1."""
    return entry["val_loss"] if select == "loss" else -entry["val_acc"]


def best_epoch(log: list[dict[str, float]], select: str) -> int:
    return min(range(len(log)), key=lambda e: (score(log[e], select), e))


def finetune(
    base: Tail, x: torch.Tensor, y: np.ndarray, fit: np.ndarray, val: np.ndarray, args: argparse.Namespace, seed: int
) -> tuple[Tail, list[dict[str, float]]]:
    """Fine-tune a copy of `base` on rows `fit` of `x` (rows, 2 flips, C, H, W); early stop on `val`.

    Returns the tail at the best epoch by `--select` (epoch 0: the frozen tail; ties go to the earlier
    epoch) and the log.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tail = copy.deepcopy(base)
    for p in tail.parameters():
        p.requires_grad_(True)
    start = {n: p.detach().clone() for n, p in tail.named_parameters()}
    yt = torch.from_numpy(y).long()
    fit, val = torch.from_numpy(fit), torch.from_numpy(val)
    weight = class_weights(y[fit.numpy()])
    fit_both = torch.cat([x[fit, 0], x[fit, 1]])
    y_both = torch.cat([yt[fit], yt[fit]])
    head = linear_probe(embed(base, fit_both), y_both, weight, args)
    xv, yv = x[val, 0], yt[val]

    def validate() -> tuple[float, float]:
        tail.eval()
        with torch.no_grad():
            logits = head(embed(tail, xv))
            return float(F.cross_entropy(logits, yv)), float((logits.argmax(1) == yv).float().mean())

    loss0, acc0 = validate()
    log = [{"epoch": 0, "val_loss": loss0, "val_acc": acc0, "train_loss": float("nan")}]
    print(f"    epoch 0 (frozen tail): val loss {loss0:.3f} acc {acc0:.3f}", file=sys.stderr, flush=True)
    best = (score(log[0], args.select), copy.deepcopy(tail.state_dict()))
    opt = torch.optim.Adam(
        [{"params": tail.parameters(), "lr": args.lr}, {"params": head.parameters(), "lr": args.head_lr}]
    )
    for epoch in range(1, args.epochs + 1):
        tail.eval()  # BatchNorm keeps its ImageNet statistics (small batches, few steps); weights still learn
        order = torch.from_numpy(rng.permutation(len(fit)))
        flips = torch.from_numpy(rng.integers(0, 2, len(fit)))
        total, t0 = 0.0, time.time()
        for k in range(0, len(order), args.batch):
            rows = order[k : k + args.batch]
            xb = x[fit[rows], flips[rows]].float()
            emb = F.dropout(tail(xb), p=args.dropout, training=True)
            ce = F.cross_entropy(head(emb), yt[fit[rows]], weight=weight, label_smoothing=args.smoothing)
            loss = ce + args.head_wd * head.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # decoupled decay toward the ImageNet weights (L2-SP)
                for n, p in tail.named_parameters():
                    p.sub_(args.lr * args.wd * (p - start[n]))
            total += float(ce.detach()) * len(rows)
        vloss, vacc = validate()
        log.append(
            {
                "epoch": epoch,
                "val_loss": vloss,
                "val_acc": vacc,
                "train_loss": total / len(fit),
                "seconds": time.time() - t0,
            }
        )
        print(
            f"    epoch {epoch}: train {total / len(fit):.3f} val loss {vloss:.3f} acc {vacc:.3f} "
            f"[{time.time() - t0:.0f}s]",
            file=sys.stderr,
            flush=True,
        )
        if score(log[-1], args.select) < best[0]:
            best = (score(log[-1], args.select), copy.deepcopy(tail.state_dict()))
        elif epoch - best_epoch(log, args.select) >= args.patience:
            break
    tail.load_state_dict(best[1])
    return tail, log


# ------------------------------------------------------------------------------------------------ CV


def color_cv(
    d: dict[str, np.ndarray],
    colored: np.ndarray,
    fold: np.ndarray,
    emb: dict[int, np.ndarray],
    regions: dict[str, np.ndarray],
) -> dict[str, Any]:
    """cv-color's `run` for the "wb regions" method (with --calibrate), the crop embedding per fold."""
    n = len(d["path"])
    y_all = np.array([COLORS.index(c) if c else -1 for c in d["color"].tolist()])
    use = list(SPEC["blocks"])
    raw = np.full((n, len(COLORS)), np.nan)
    cal = raw.copy()
    temps = []
    for f in sorted(emb):
        crop_x = d["color_x"].copy()
        crop_x[colored, :FEATURES] = emb[f]
        x = {"crop": crop_x} | regions
        test, train = colored[fold == f], colored[fold != f]
        head = cv.fit_color(x, train, y_all, SPEC)
        xt = np.hstack([x[k][test] for k in use])
        raw[test] = head.predict_proba(xt)
        fit_part, val_part = cv.inner_split(d["group"], train, 0.2, f)
        inner = cv.fit_color(x, fit_part, y_all, SPEC)
        t = fit_temperature(inner.logits(np.hstack([x[k][val_part] for k in use])), y_all[val_part])
        temps.append(t)
        cal[test] = LinearHead(*cv.astuple_head(head), temperature=t).predict_proba(xt)
    row: dict[str, Any] = {}
    for part, sel in (("all", colored), ("dev", colored[d["source"][colored] == "dev"])):
        m = classification(COLORS, list(y_all[sel]), raw[sel])
        row[f"{part}_acc"] = m["accuracy"]
        if part == "all":
            row |= {f"recall_{c}": m["recall"].get(c) for c in COLORS}
            row["ece_raw"] = calibration(list(y_all[sel]), raw[sel])["ece"]
            row["ece_cal"] = calibration(list(y_all[sel]), cal[sel])["ece"]
    row["hit"] = raw[colored].argmax(1) == y_all[colored]  # per colored row, for `compare`
    return row


def type_cv(d: dict[str, np.ndarray], x: np.ndarray, gx: np.ndarray, folds: int) -> dict[str, Any]:
    """cv-color's `type` for "type head (as trained)": threshold from the inner split."""
    typed = np.flatnonzero(d["type"] != "")
    y = np.array([TYPES.index(t) if t else -1 for t in d["type"].tolist()])
    fold = cv.assign_folds(d["group"][typed], folds)
    pred = np.full(len(y), -1)
    for f in range(folds):
        test, train = typed[fold == f], typed[fold != f]
        fit_part, val_part = cv.inner_split(d["group"], train, 0.2, f)
        inner = cv.fit_type(x, gx, y, fit_part)
        threshold = choose_placeholder_threshold(list(y[val_part]), inner.predict_proba(x[val_part]))
        pred[test] = decide_types(cv.fit_type(x, gx, y, train).predict_proba(x[test]), threshold)
    m = classification(TYPES, list(y[typed]), np.eye(len(TYPES))[pred[typed]], list(pred[typed]))
    return {"acc": m["accuracy"], "recall": m["recall"]}


def show(name: str, row: dict[str, Any]) -> None:
    print(
        f"{name:34s} all {row['all_acc']:.4f} dev {row['dev_acc']:.4f} Grey {row['recall_Grey']:.3f} "
        f"White {row['recall_White']:.3f} Black {row['recall_Black']:.3f} "
        f"ECE {row['ece_raw']:.3f} -> {row['ece_cal']:.3f}",
        flush=True,
    )


def cmd_run(args: argparse.Namespace) -> None:
    threads()
    d = cv.load()
    cache = dict(np.load(OUT / "trunk.npz"))
    colored, typed = cache["colored"], cache["typed"]
    model = lite0().eval()
    fold = cv.assign_folds(d["group"][colored], args.folds)
    y = np.array([COLORS.index(c) for c in d["color"][colored].tolist()])
    names = [b for b in SPEC["blocks"] if b != "crop"]
    regions = {
        k: cv.scatter(v, colored, len(d["path"])) for k, v in cv.region_blocks(d["crop64"][colored], names).items()
    }
    frozen = d["color_x"][colored, :FEATURES]
    print(f"{len(colored)} colored crops, {len(typed)} typed images; tail {args.tail}", flush=True)
    show("frozen (onnx, as cv-color)", color_cv(d, colored, fold, dict.fromkeys(range(args.folds), frozen), regions))
    t0 = time.time()
    x = tail_input(model, cache["crop_act"], args.tail)
    xw = tail_input(model, cache["whole_act"], args.tail)
    xg = tail_input(model, cache["gen_act"], args.tail)
    print(f"tail input {tuple(x.shape)} in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    base = Tail(model, STAGE7 if args.tail == 1 else SPLIT)
    show(
        "frozen (torch tail)",
        color_cv(d, colored, fold, dict.fromkeys(range(args.folds), embed(base, x[:, 0]).numpy()), regions),
    )
    emb: dict[int, np.ndarray] = {}
    whole_emb = np.zeros((len(typed), FEATURES), np.float32)
    gen_emb = np.zeros((len(xg), FEATURES), np.float32)
    logs = {}
    colored_group_fold = {g: int(f) for g, f in zip(d["group"][colored].tolist(), fold.tolist(), strict=True)}
    whole_fold = np.array([colored_group_fold.get(g, 0) for g in d["group"][typed].tolist()])
    for f in range(args.folds):
        t0 = time.time()
        train = np.flatnonzero(fold != f)  # positions in `colored`
        fit_rows, val_rows = cv.inner_split(d["group"], colored[train], 0.2, f)
        pos = {int(i): k for k, i in enumerate(colored)}
        fit = np.array([pos[int(i)] for i in fit_rows])
        val = np.array([pos[int(i)] for i in val_rows])
        print(f"fold {f}: fine-tune on {len(fit)} crops (x2 flips), early stop on {len(val)}", file=sys.stderr)
        tail, log = finetune(base, x, y, fit, val, args, seed=f)
        logs[f] = log
        best = log[best_epoch(log, args.select)]
        print(
            f"  fold {f}: best epoch {best['epoch']} (val acc {best['val_acc']:.3f} vs {log[0]['val_acc']:.3f} "
            f"frozen) [{time.time() - t0:.0f}s]",
            file=sys.stderr,
            flush=True,
        )
        emb[f] = embed(tail, x[:, 0]).numpy()
        whole_emb[whole_fold == f] = embed(tail, xw[whole_fold == f]).numpy()
        if f == 0:
            gen_emb = embed(tail, xg).numpy()
    row = color_cv(d, colored, fold, emb, regions)
    show(f"fine-tuned tail {args.tail}", row)
    np.savez(OUT / f"emb-tail{args.tail}.npz", **{f"fold{f}": e for f, e in emb.items()}, whole=whole_emb, gen=gen_emb)
    # Type (informative): whole-image rows get the tail of the color fold holding their group, so no
    # tail saw a test image's group; groups without colored rows and the generated placeholders get fold 0's.
    gen = dict(np.load(cv.CACHE / "generated.npz"))
    type_x = d["type_x"].copy()
    type_frozen = type_cv(d, type_x, gen["type_x"], args.folds)
    type_x[typed, :FEATURES] = whole_emb
    gx = gen["type_x"].copy()
    gx[:, :FEATURES] = gen_emb
    type_ft = type_cv(d, type_x, gx, args.folds)
    for name, r in (("type, frozen embedding", type_frozen), (f"type, fine-tuned tail {args.tail}", type_ft)):
        rec = " ".join(f"{k} {v:.3f}" for k, v in r["recall"].items())
        print(f"{name:34s} acc {r['acc']:.4f} recall {rec}", flush=True)
    out = OUT / f"result-tail{args.tail}-{int(time.time())}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args) | {"func": None},
                "color": {k: v for k, v in row.items() if k != "hit"},
                "type_frozen": type_frozen,
                "type_finetuned": type_ft,
                "logs": logs,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    print(f"-> {out}", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> None:
    """Frozen against the saved fine-tuned embeddings (`run`'s emb-tail<k>.npz): per-fold top-1 and
    the paired test on the rows where exactly one of the two is right (exact two-sided binomial)."""
    from math import comb

    d = cv.load()
    colored = np.load(OUT / "trunk.npz")["colored"]
    fold = cv.assign_folds(d["group"][colored], args.folds)
    names = [b for b in SPEC["blocks"] if b != "crop"]
    blocks = cv.region_blocks(d["crop64"][colored], names)
    regions = {k: cv.scatter(v, colored, len(d["path"])) for k, v in blocks.items()}
    saved = np.load(OUT / f"emb-tail{args.tail}.npz")
    frozen = color_cv(d, colored, fold, dict.fromkeys(range(args.folds), d["color_x"][colored, :FEATURES]), regions)
    tuned = color_cv(d, colored, fold, {f: saved[f"fold{f}"] for f in range(args.folds)}, regions)
    for f in range(args.folds):
        sel = fold == f
        print(
            f"fold {f}: {sel.sum():4d} crops, frozen {frozen['hit'][sel].mean():.4f} "
            f"fine-tuned {tuned['hit'][sel].mean():.4f}"
        )
    b = int((tuned["hit"] & ~frozen["hit"]).sum())
    c = int((~tuned["hit"] & frozen["hit"]).sum())
    p = min(1.0, 2 * sum(comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))
    print(
        f"all: frozen {frozen['all_acc']:.4f} fine-tuned {tuned['all_acc']:.4f}; only fine-tuned right {b}, "
        f"only frozen right {c}, two-sided p {p:.3f}"
    )


# -------------------------------------------------------------------------------------------- timing


def cmd_timing(args: argparse.Namespace) -> None:
    """onnxruntime milliseconds per image of each tail alone (1 thread, as a serving worker) and of
    the whole backbone, best of several runs."""
    import onnxruntime as ort

    from lotlens.vision.backbone import session_options
    from lotlens.vision.pipeline import BACKBONE_FILE, default_model_dir

    threads()
    model = lite0().eval()
    OUT.mkdir(parents=True, exist_ok=True)
    cases = {"backbone (whole)": (default_model_dir() / BACKBONE_FILE, (3, 224, 224))}
    for tail, start, shape in ((1, STAGE7, (192, 7, 7)), (2, SPLIT, (112, 14, 14))):
        path = OUT / f"tail{tail}.onnx"
        torch.onnx.export(
            Tail(model, start).eval(),
            torch.zeros(1, *shape),
            str(path),
            input_names=["x"],
            output_names=["features"],
            dynamic_axes={"x": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        cases[f"tail {tail} (blocks {start}-15 + conv_head)"] = (path, shape)
    for name, (path, shape) in cases.items():
        sess = ort.InferenceSession(str(path), session_options(1, serving=True), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0].name
        for batch in (1, 4):
            x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
            sess.run(None, {inp: x})
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for _ in range(10):
                    sess.run(None, {inp: x})
                best = min(best, (time.perf_counter() - t0) / 10 / batch)
            print(f"{name:40s} batch {batch}: {best * 1000:.2f} ms per image", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("trunk").set_defaults(func=cmd_trunk)
    r = sub.add_parser("run")
    r.add_argument("--tail", type=int, choices=(1, 2), default=1, help="1: last stage; 2: last two stages")
    r.add_argument("--folds", type=int, default=5)
    r.add_argument("--epochs", type=int, default=8)
    r.add_argument("--patience", type=int, default=3)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--lr", type=float, default=3e-4, help="the tail's Adam learning rate")
    r.add_argument("--head-lr", type=float, default=1e-3)
    r.add_argument("--wd", type=float, default=1.0, help="decoupled decay toward the ImageNet weights, per lr")
    r.add_argument("--head-wd", type=float, default=1e-3, help="L2 on the 12-way head's (standardised) weights")
    r.add_argument("--smoothing", type=float, default=0.1, help="label smoothing of the fine-tuning loss")
    r.add_argument("--select", choices=("loss", "acc"), default="acc", help="early stopping on val loss or top-1")
    r.add_argument("--dropout", type=float, default=0.2)
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compare")
    c.add_argument("--tail", type=int, choices=(1, 2), default=1)
    c.add_argument("--folds", type=int, default=5)
    c.set_defaults(func=cmd_compare)
    t = sub.add_parser("timing")
    t.add_argument("--repeats", type=int, default=5)
    t.set_defaults(func=cmd_timing)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
