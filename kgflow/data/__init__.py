"""Data: the RecData contract, file readers, preprocessing, splits, and the data home."""
