"""Hyperparameter search over pipelines (``kgflow tune``)."""
