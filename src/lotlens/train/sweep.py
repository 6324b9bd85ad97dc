"""`lotlens train sweep`: train 4 to 8 candidates on a dataset version in separate, low-priority
processes (the server keeps serving), evaluate each on the held-out advertisers and any ad-hoc
test manifests, and rank them by a configured score.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from lotlens.config import Settings
from lotlens.errors import ManifestError
from lotlens.labels import TYPES
from lotlens.train.dataset import local_copy

MIN_CANDIDATES, MAX_CANDIDATES = 4, 8
DEFAULT_SCORE = {"type_accuracy": 1.0, "placeholder_recall": 2.0, "color_accuracy": 1.0, "worst_group": 0.5}


@dataclass(frozen=True)
class Candidate:
    name: str
    overrides: dict[str, Any]


@dataclass
class SweepResult:
    sweep: str
    folder: Path
    rows: list[dict[str, Any]] = field(default_factory=list)  # best first

    @property
    def best(self) -> dict[str, Any]:
        return self.rows[0]


def load_configs(path: Path) -> tuple[list[Candidate], dict[str, float]]:
    """Read a sweep file (see configs/sweep.yaml).

    Raises:
        ManifestError: unreadable, fewer than 4 or more than 8 candidates, unknown settings.
    """
    from lotlens.train.fit import TrainConfig

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read sweep configs {path}: {exc}") from exc
    allowed = {f.name for f in fields(TrainConfig)} - {"name"}
    candidates = []
    for i, entry in enumerate(doc.get("candidates") or []):
        entry = dict(entry or {})
        name = str(entry.pop("name", f"candidate-{i}"))
        unknown = set(entry) - allowed
        if unknown:
            raise ManifestError(
                f"{path}: candidate {name}: unknown settings {sorted(unknown)}; known: {sorted(allowed)}"
            )
        try:
            TrainConfig(**entry)
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: candidate {name}: {exc}") from exc
        candidates.append(Candidate(name, entry))
    if not MIN_CANDIDATES <= len(candidates) <= MAX_CANDIDATES:
        raise ManifestError(
            f"{path}: {len(candidates)} candidates; a sweep trains {MIN_CANDIDATES} to {MAX_CANDIDATES}"
        )
    if len({c.name for c in candidates}) != len(candidates):
        raise ManifestError(f"{path}: candidate names must differ")
    score = {**DEFAULT_SCORE, **{k: float(v) for k, v in (doc.get("score") or {}).items()}}
    unknown_score = set(score) - set(DEFAULT_SCORE)
    if unknown_score:
        raise ManifestError(f"{path}: unknown score terms {sorted(unknown_score)}")
    return candidates, score


def _worker_setup(blas_threads: int) -> None:
    """A candidate's process: lower priority (training yields the CPU to the server) and its share
    of the cores for numpy's BLAS. Unlimited, every worker's OpenBLAS runs a thread a core and
    they spin against each other: two workers on two cores spent minutes in the network type
    head's small products, which take seconds alone."""
    from threadpoolctl import threadpool_limits

    os.nice(10)
    threadpool_limits(blas_threads, user_api="blas")


def blas_share(workers: int) -> int:
    """BLAS threads for each of `workers` concurrent candidates: the cores split between them."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _train_and_evaluate(
    name: str, overrides: dict[str, Any], train_csv: str, test_csvs: list[tuple[str, str]], root: str, out: str
) -> dict[str, Any]:
    """In a worker process: train one candidate, evaluate it on each test manifest."""
    from lotlens.train.evaluate import evaluate
    from lotlens.train.fit import TrainConfig, train
    from lotlens.vision import Pipeline

    folder = train(Path(train_csv), Path(out), Path(root), TrainConfig(name=name, **overrides))
    pipeline = Pipeline.load(Path(out))
    return {
        "version": folder.version,
        "path": out,
        "evaluations": {t: evaluate(pipeline, Path(t), Path(r)) for t, r in test_csvs},
    }


def summarise(name: str, evaluation: dict[str, Any], score_weights: dict[str, float]) -> dict[str, Any]:
    """One comparison row from an `evaluate` result."""
    t, c = evaluation["type"], evaluation["color"]
    typed_groups = [g["type_accuracy"] for g in evaluation["groups"] if g["type_accuracy"] is not None]
    row = {
        "name": name,
        "type_accuracy": t["accuracy"],
        "placeholder_recall": t["recall"].get("Placeholder"),
        "color_accuracy": c["accuracy"],
        "color_top2": c["top2"],
        "worst_group": min(typed_groups) if typed_groups else None,
        "worst_group_name": next(
            (
                g["group"]
                for g in evaluation["groups"]
                if g["type_accuracy"] is not None and g["type_accuracy"] == min(typed_groups)
            ),
            None,
        )
        if typed_groups
        else None,
        "recall": {
            **{f"type:{k}": v for k, v in t["recall"].items()},
            **{f"color:{k}": v for k, v in c["recall"].items()},
        },
    }
    # A term with nothing to measure (no colored test row, say) adds nothing rather than NaN.
    row["score"] = sum(
        w * (row[k] if isinstance(row[k], float) and row[k] == row[k] else 0.0) for k, w in score_weights.items()
    )
    return row


def run(
    settings: Settings,
    dataset: str,
    configs: Path,
    extra_tests: list[Path] | None = None,
    extra_root: Path | None = None,
    workers: int = 2,
    on_done: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train and compare the candidates of `configs` on dataset version `dataset`."""
    folder, images_root = local_copy(settings, dataset)  # a remote root's files, copied to the cache
    candidates, weights = load_configs(configs)
    digest = hashlib.sha256(configs.read_bytes() + dataset.encode()).hexdigest()[:8]
    sweep_id = f"sw-{dataset.removeprefix('ds-')[:8]}-{digest}"
    out = settings.data_dir / "sweeps" / sweep_id
    out.mkdir(parents=True, exist_ok=True)
    # Dataset paths are under the (local copy of the) storage root; an ad-hoc manifest's under
    # `extra_root` or its own folder.
    tests = [
        (str(folder / "test.csv"), str(images_root)),
        *((str(t), str(extra_root or t.parent)) for t in extra_tests or []),
    ]
    results: dict[str, dict[str, Any]] = {}
    ctx = get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_worker_setup, initargs=(blas_share(workers),)
    ) as pool:
        futures = {
            pool.submit(
                _train_and_evaluate,
                c.name,
                c.overrides,
                str(folder / "train.csv"),
                tests,
                str(images_root),
                str(out / c.name),
            ): c
            for c in candidates
        }
        for fut in as_completed(futures):
            c = futures[fut]
            results[c.name] = fut.result()
            if on_done:
                on_done(c.name)
    rows = []
    for c in candidates:
        r = results[c.name]
        row = summarise(c.name, r["evaluations"][tests[0][0]], weights)
        row |= {
            "version": r["version"],
            "path": r["path"],
            "overrides": c.overrides,
            "ad_hoc": {
                t: summarise(c.name, e, weights) | {"unreadable": len(e["skipped"])}
                for t, e in r["evaluations"].items()
                if t != tests[0][0]
            },
        }
        rows.append(row)
    rows.sort(key=lambda r: -r["score"])
    result = SweepResult(sweep_id, out, rows)
    (out / "comparison.json").write_text(
        json.dumps({"sweep": sweep_id, "dataset": dataset, "score": weights, "rows": rows}, indent=2, default=str)
        + "\n"
    )
    write_report(result, dataset, weights)
    return result


def write_report(result: SweepResult, dataset: str, weights: dict[str, float]) -> Path:
    """`report.html` with a metrics plot per candidate, beside comparison.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from jinja2 import Environment, PackageLoader, select_autoescape

    metrics = ["type_accuracy", "placeholder_recall", "color_accuracy", "worst_group"]
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.5 * len(result.rows) * len(metrics) / 2))
    height = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        ax.barh(
            [i + j * height for i in range(len(result.rows))], [r[m] or 0 for r in result.rows], height=height, label=m
        )
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(result.rows))], [r["name"] for r in result.rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"sweep {result.sweep} on {dataset} (best first)")
    fig.tight_layout()
    fig.savefig(result.folder / "metrics.png", dpi=110)
    plt.close(fig)
    env = Environment(loader=PackageLoader("lotlens.train", "templates"), autoescape=select_autoescape())
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    labels = [f"type:{t}" for t in TYPES]
    page = result.folder / "report.html"
    page.write_text(
        env.get_template("sweep.html").render(r=result, dataset=dataset, weights=weights, recall_labels=labels)
    )
    return page
