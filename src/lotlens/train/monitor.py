"""Watch figures: per model version and advertiser, per day, the type mix of the answers and the
manual-fix rate (fixes per 1,000 answers, the live accuracy signal); flags what moved.

An answer is an image served to an advertiser on a day, counted once however often it was asked
(from the model or the cache), under the model that made the answer it got: the model that
actually served that period, which need not be today's champion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from lotlens.labels import TYPES
from lotlens.store import Store


@dataclass
class Figures:
    """One (advertiser, model version) over a span of days."""

    advertiser: str
    model_version: str
    answers: int = 0  # distinct images a day, summed over the days
    fixes: int = 0
    types: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)  # model | cache | manual

    @property
    def fix_rate(self) -> float:
        """Fixes per 1,000 answers."""
        return 1000.0 * self.fixes / self.answers if self.answers else 0.0

    def mix(self) -> dict[str, float]:
        total = sum(self.types.values())
        return {t: self.types.get(t, 0) / total if total else 0.0 for t in TYPES}


@dataclass
class Watch:
    recent: list[Figures]
    baseline: dict[tuple[str, str], Figures]
    flags: list[str]
    daily: dict[tuple[date, str, str], Figures]


def watch(
    store: Store,
    days: int = 14,
    recent_days: int = 1,
    fix_rate_factor: float = 2.0,
    min_fix_rate: float = 5.0,
    mix_shift: float = 0.15,
    today: date | None = None,
    champion: str | None = None,
) -> Watch:
    """Figures for the last `recent_days` against the days before them, within `days`.

    An advertiser is flagged when its recent fix rate is over `fix_rate_factor` times its baseline
    (and over `min_fix_rate` per 1,000), or when its type mix moved by more than `mix_shift` (half
    the L1 distance between the two mixes). A flag names the model that served the answers and,
    when `champion` is given and is another model, says so.
    """
    today = today or datetime.now(UTC).date()
    start, cut = today - timedelta(days=days - 1), today - timedelta(days=recent_days - 1)
    daily: dict[tuple[date, str, str], Figures] = {}
    for day, adv, version, type_, source, n in store.answer_counts(start):
        f = daily.setdefault((day, adv, version), Figures(adv, version))
        f.answers += n
        f.types[type_] = f.types.get(type_, 0) + n
        f.sources[source] = f.sources.get(source, 0) + n
    for fix in store.fixes(since=datetime.combine(start, datetime.min.time(), UTC)):
        if fix.confirmation:  # a "Looks right" confirms the model: not a correction
            continue
        day = fix.created_at.date()
        key = (day, fix.advertiser or "global", fix.model_version or "manual")
        daily.setdefault(key, Figures(key[1], key[2])).fixes += 1
    recent: dict[tuple[str, str], Figures] = {}
    baseline: dict[tuple[str, str], Figures] = {}
    for (day, adv, version), f in daily.items():
        target = recent if day >= cut else baseline
        agg = target.setdefault((adv, version), Figures(adv, version))
        agg.advertiser, agg.model_version = adv, version
        agg.answers += f.answers
        agg.fixes += f.fixes
        for t, n in f.types.items():
            agg.types[t] = agg.types.get(t, 0) + n
        for src, n in f.sources.items():
            agg.sources[src] = agg.sources.get(src, 0) + n
    flags = []
    for pair, now_f in sorted(recent.items()):
        base = baseline.get(pair)
        if now_f.fix_rate >= min_fix_rate and (
            base is None or not base.answers or now_f.fix_rate > fix_rate_factor * max(base.fix_rate, 0.1)
        ):
            was = f"{base.fix_rate:.1f}" if base and base.answers else "no baseline"
            flags.append(
                f"{pair[0]} on {pair[1]}: fix rate {now_f.fix_rate:.1f}/1000 (was {was})" + _not(pair, champion)
            )
        if base and base.answers and now_f.answers:
            shift = sum(abs(now_f.mix()[t] - base.mix()[t]) for t in TYPES) / 2
            if shift > mix_shift:
                flags.append(
                    f"{pair[0]} on {pair[1]}: type mix moved by {shift:.0%} ({_mix(base)} -> {_mix(now_f)})"
                    + _not(pair, champion)
                )
    return Watch(sorted(recent.values(), key=lambda f: (-f.fix_rate, f.advertiser)), baseline, flags, daily)


def _not(pair: tuple[str, str], champion: str | None) -> str:
    """A flag on a model that is no longer the champion says so: rolling back would not undo it."""
    if champion is None or pair[1] in (champion, "manual"):
        return ""
    return f"; served by {pair[1]}, the champion is now {champion}"


def _mix(f: Figures) -> str:
    return "/".join(f"{100 * v:.0f}" for v in f.mix().values())
