"""A pipeline whose answers the test sets: tests of the service, the API and the pages check what
the code around the model does, not what the bundled model happens to answer on a synthetic image."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lotlens.imaging import RGBArray
from lotlens.labels import COLORS, PLACEHOLDER, TYPES
from lotlens.vision.pipeline import Prediction

Answer = Callable[[RGBArray], tuple[str, str | None]]


def by_dominant_channel(image: RGBArray) -> tuple[str, str | None]:
    """Dealer, colored by the image's strongest channel (Grey when none stands out)."""
    mean = image.reshape(-1, 3).mean(axis=0)
    if mean.max() - mean.min() < 12:
        return "Dealer", "Grey"
    return "Dealer", ("Red", "Green", "Blue")[int(np.argmax(mean))]


class FakePipeline:
    """Stands in for `lotlens.vision.Pipeline`: same `classify` and `version`, answers from `answer`."""

    def __init__(self, answer: Answer = by_dominant_channel, version: str = "fake-1") -> None:
        self.answer = answer
        self.version = version
        self.calls = 0

    def classify(self, images: Sequence[RGBArray], with_color: Sequence[bool] | None = None) -> list[Prediction]:
        self.calls += 1
        out = []
        for i, image in enumerate(images):
            type_, color = self.answer(image)
            type_scores = {t: (0.9 if t == type_ else 0.05) for t in TYPES}
            if type_ == PLACEHOLDER or (with_color is not None and not with_color[i]) or color is None:
                out.append(Prediction(type_, None, type_scores, {}, None, "none", self.version))
                continue
            color_scores = {c: (0.8 if c == color else 0.2 / (len(COLORS) - 1)) for c in COLORS}
            h, w = image.shape[:2]
            out.append(Prediction(type_, color, type_scores, color_scores, (0, 0, w, h), "none", self.version))
        return out
