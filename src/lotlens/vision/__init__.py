"""The type -> crop -> color pipeline: backbone, detector, cheap signals, linear heads."""

from lotlens.vision.pipeline import Pipeline, Prediction

__all__ = ["Pipeline", "Prediction"]
