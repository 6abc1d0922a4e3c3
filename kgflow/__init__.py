"""kgflow: declarative recommendation with knowledge graphs, graph neural networks and language models.

A pipeline YAML names a dataset, split, graph builder, encoders, fusion and objective; ``kgflow run``
resolves each name through the plugin registry and trains and evaluates the result.
"""
__version__ = "0.1.0"
