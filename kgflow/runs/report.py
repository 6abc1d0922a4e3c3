"""Printing results for people."""
from __future__ import annotations

from typing import Any


def print_metrics(result: dict[str, Any]) -> None:
    """A table of test metrics (rows) per user group (columns), then the cost figures."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    groups = result.get("test", {})
    if groups:
        table = Table(title="test metrics (full ranking)")
        table.add_column("metric")
        for group, values in groups.items():
            table.add_column(f"{group} ({values.get('users', 0)} users)", justify="right")
        keys = [k for k in next(iter(groups.values())) if k != "users"]
        for key in keys:
            table.add_row(key, *[f"{values.get(key, float('nan')):.4f}" for values in groups.values()])
        console.print(table)
    t = result["timing"]
    console.print(f"epochs {t['epochs']} (best {result.get('best_epoch')}), "
                  f"{t['seconds_per_epoch']:.3f} s/epoch, {t['eval_seconds']:.3f} s/eval, "
                  f"peak {t['peak_rss_mb']:.0f} MB")
