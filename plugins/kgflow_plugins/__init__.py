"""kgflow's first-party components. They register through the ``kgflow`` entry-point group and use
only :mod:`kgflow.plugin`, exactly as a third-party package would."""
