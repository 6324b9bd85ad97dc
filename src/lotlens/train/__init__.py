"""Datasets, training, evaluation and reports. Needs the `train` extra (scikit-learn, matplotlib)."""
