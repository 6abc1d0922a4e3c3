"""What beyond-accuracy metrics read of the data: training popularity and the item table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kgflow.data.recdata import RecData, Split
from kgflow.registry.contexts import MetricContext


def metric_context(split: Split, items: pd.DataFrame | None = None) -> MetricContext:
    """The metric context of a split: each item's training interactions (so that popularity is
    what a model could have learnt from, not what the test reveals), the split's user count, and
    ``items`` (an item table indexed by raw item id) in dense item order, if given."""
    popularity = torch.from_numpy(np.bincount(split.train.item, minlength=split.n_items).astype(np.float64))
    table = None
    if items is not None:
        table = items.copy()
        table.index = table.index.astype(str)
        table = table.reindex(pd.Index(split.item_ids.astype(str))).reset_index(drop=True)
    return MetricContext(item_popularity=popularity, n_users=split.n_users, items=table)


def context_of(split: Split, data: RecData | None) -> MetricContext:
    """:func:`metric_context` with the dataset's item table, when it has one."""
    return metric_context(split, data.items if data is not None else None)
