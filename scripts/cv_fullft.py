#!/usr/bin/env python
"""Issue #13 probe: fine-tune the whole Lite0 on vehicle crops, on folds of scripts/cv-color.

The frozen ImageNet trunk with linear heads sits at 86-88% of color in grouped CV whatever the
head (scripts/cv_methods.py); fine-tuning the last one or two stages gave +0.2 to +0.5 points
(scripts/cv_finetune.py). This asks whether training every layer, with pixel-level augmentation
that keeps color (random crops and flips, no color jitter), moves the ceiling: per held-out fold,
the fine-tuned network's own top-1, the frozen recipe's on the same rows (the out-of-fold
probabilities `scripts/cv-color run` saved), and the two averaged.

Same crops as cv-color (the located box of each colored row, re-cut at full resolution from the
source image), same 5 grouped folds; the training side's inner validation groups (cv-color's
inner_split) pick the epoch. Needs the `export` extra (torch on CPU) and `scripts/cv-color
features` + `run --only "wb regions"` first:

    nice -n 19 .venv/bin/python scripts/cv_fullft.py crops              # ~2 min: 224 px crops
    nice -n 19 .venv/bin/python scripts/cv_fullft.py run --folds 0 --epochs 4

Result (2026-12-03, fold 0 of 5: 1,033 held-out crops, 1,413 training; 3-4 minutes an epoch on
two cores beside other work): inner validation 0.68 / 0.82 / 0.78 / 0.80 after epochs 0-3
(epoch 1 kept); held-out top-1 **0.703** against 0.890 for the frozen "wb regions" heads on the
same rows (0.938 with recolor), 0.871 the two averaged. White 0.94, Black 0.85 (the fold has no
Grey). Four epochs of full fine-tuning on ~1,400 crops from few sources overfit their look: not a
way past the plateau at this data size and compute; the frozen trunk stays.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import cv2
import cv_finetune as ft  # scripts/ is on the path when this script runs
import export_backbone as eb
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lotlens.imaging import MODEL_SIDE, crop, decode
from lotlens.labels import COLORS, PLACEHOLDER

SIDE = 224


cv = ft.cv  # scripts/cv-color, loaded once by cv_finetune
OUT = cv.CACHE / "finetune"


def colored_rows(d: dict[str, np.ndarray]) -> np.ndarray:
    return np.flatnonzero((d["color"] != "") & (d["type"] != PLACEHOLDER))


def cmd_crops(args: argparse.Namespace) -> None:
    """The located crop of every colored row, square-resized to 224 px (as the backbone sees it)."""
    d = cv.load()
    rows = colored_rows(d)
    out = np.zeros((len(rows), SIDE, SIDE, 3), dtype=np.uint8)
    t0 = time.time()
    for n, i in enumerate(rows):
        if n % 200 == 0:
            print(f"crops {n}/{len(rows)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
        image = decode((cv.DATA / str(d["source"][i]) / str(d["path"][i])).read_bytes(), min_side=MODEL_SIDE)
        box = tuple(int(v) for v in d["box"][i])
        cut = image if box[0] < 0 else crop(image, box)  # type: ignore[arg-type]
        out[n] = cv2.resize(cut, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(OUT / "crops224.npz", rows=rows, crops=out)


def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random crops of 75-100% of the side, resized back, and horizontal flips; colors untouched."""
    out = np.empty_like(batch)
    for k, im in enumerate(batch):
        s = int(SIDE * rng.uniform(0.75, 1.0))
        y, x = rng.integers(0, SIDE - s + 1, size=2)
        cut = cv2.resize(im[y : y + s, x : x + s], (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
        out[k] = cut[:, ::-1] if rng.random() < 0.5 else cut
    return out


def tensor(batch: np.ndarray) -> torch.Tensor:
    x = (batch.astype(np.float32) - 127.0) / 128.0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = eb.load(True)
        with torch.no_grad():
            self.body(torch.zeros(1, 3, SIDE, SIDE))  # fixes the SAME pads for 224 inputs
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(1280, len(COLORS))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        m = self.body
        x = F.relu6(m._bn0(m._conv_stem(x)))
        for b in m._blocks:
            x = b(x)
        return F.relu6(m._bn1(m._conv_head(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.embed(x)))


def predict(net: Net, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            b = crops[i : i + batch]
            logits = net(tensor(b)) + net(tensor(b[:, :, ::-1]))  # with the flip
            out.append(F.softmax(logits / 2, dim=1).numpy())
    return np.concatenate(out)


def freeze_bn(net: Net) -> None:
    """Batch statistics from ImageNet stay (small batches, few sources); affine parameters train."""
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eval()


def train_fold(
    crops: np.ndarray, y: np.ndarray, fit: np.ndarray, val: np.ndarray, args: argparse.Namespace
) -> tuple[Net, list[float]]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = Net()
    counts = np.bincount(y[fit], minlength=len(COLORS)).astype(np.float32)
    weight = torch.tensor(np.where(counts > 0, 1 / np.sqrt(np.maximum(counts, 1)), 0.0), dtype=torch.float32)
    weight = weight / weight[counts > 0].mean()
    head_params = list(net.head.parameters())
    body_params = list(net.body.parameters())
    opt = torch.optim.AdamW(
        [{"params": head_params, "lr": args.head_lr}, {"params": body_params, "lr": args.lr}], weight_decay=1e-4
    )
    steps = args.epochs * (len(fit) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[args.head_lr, args.lr], total_steps=max(steps, 1), pct_start=0.15
    )
    best, best_state, history = -1.0, None, []
    for epoch in range(args.epochs):
        t0 = time.time()
        net.train()
        freeze_bn(net)
        order = rng.permutation(fit)
        losses = []
        for i in range(0, len(order) - args.batch + 1, args.batch):
            idx = order[i : i + args.batch]
            x = tensor(augment(crops[idx], rng))
            loss = F.cross_entropy(net(x), torch.from_numpy(y[idx]), weight=weight, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        acc = float((predict(net, crops[val]).argmax(1) == y[val]).mean())
        history.append(acc)
        print(
            f"  epoch {epoch}: loss {np.mean(losses):.3f} inner val {acc:.3f} [{time.time() - t0:.0f}s]",
            flush=True,
        )
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in net.state_dict().items()}
    assert best_state is not None
    net.load_state_dict(best_state)
    return net, history


def cmd_run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    d = cv.load()
    c = np.load(OUT / "crops224.npz")
    rows, crops = c["rows"], c["crops"]
    y = np.array([COLORS.index(str(v)) for v in d["color"][rows]])
    groups = d["group"][rows]
    fold = cv.assign_folds(groups, 5)
    frozen = {}
    for name in ("wb-regions", "wb-regions-recolor"):
        path = cv.CACHE / "results" / f"oof-{name}.npz"
        if path.is_file():
            o = np.load(path)
            assert (o["rows"] == rows).all(), "run scripts/cv-color run first, on the same cache"
            frozen[name] = o["raw"][rows]
    for f in args.folds:
        print(f"fold {f}", flush=True)
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        fit_part, val_part = cv.inner_split(groups, train, 0.2, f)
        net, history = train_fold(crops, y, fit_part, val_part, args)
        p = predict(net, crops[test])
        line = [f"fold {f}: n {len(test)}", f"fine-tuned {float((p.argmax(1) == y[test]).mean()):.3f}"]
        for name, q in frozen.items():
            qt = q[test]
            both = np.exp(0.5 * np.log(p + 1e-6) + 0.5 * np.log(qt + 1e-6))
            line.append(f"{name} {float((qt.argmax(1) == y[test]).mean()):.3f}")
            line.append(f"averaged with it {float((both.argmax(1) == y[test]).mean()):.3f}")
        for col in ("Grey", "White", "Black"):
            m = y[test] == COLORS.index(col)
            line.append(f"{col} {float((p[m].argmax(1) == y[test][m]).mean()):.2f}")
        print("  " + ", ".join(line), flush=True)
        np.savez(OUT / f"fullft-fold{f}.npz", test=test, probs=p, history=np.array(history))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("crops").set_defaults(func=cmd_crops)
    r = sub.add_parser("run")
    r.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    r.add_argument("--epochs", type=int, default=4)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--lr", type=float, default=1e-4)
    r.add_argument("--head-lr", type=float, default=1e-3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=2)
    r.set_defaults(func=cmd_run)
    args = ap.parse_args()
    random.seed(0)
    args.func(args)


if __name__ == "__main__":
    main()
