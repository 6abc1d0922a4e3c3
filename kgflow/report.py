"""Pictures and a readable report of finished runs: ``kgflow report RUN [RUN ...]``.

One run: training curves (loss and the validation metric per epoch) and the test metrics per
evaluation group. Several runs on one split: a comparison chart of the chosen metric per run with
cost (seconds per epoch) beside it. Everything lands in ``RUN/report/`` (the first run's for a
comparison): PNG files and an ``index.html`` that embeds them with the numbers, readable without a
terminal.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from kgflow.errors import KgflowError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def training_curves(run: Path, metric: str, out: Path) -> Path | None:
    log = run / "logs" / "metrics.csv"
    if not log.is_file():
        return None
    frame = pd.read_csv(log)
    plt = _pyplot()
    fig, left = plt.subplots(figsize=(7, 4))
    if "train/loss" in frame:
        loss = frame.dropna(subset=["train/loss"]).groupby("epoch")["train/loss"].last()
        left.plot(loss.index, loss.values, color="tab:gray", label="training loss")
        left.set_ylabel("training loss")
    left.set_xlabel("epoch")
    column = f"valid/{metric}"
    if column in frame:
        right = left.twinx()
        valid = frame.dropna(subset=[column]).groupby("epoch")[column].last()
        right.plot(valid.index, valid.values, color="tab:blue", label=f"validation {metric}")
        right.set_ylabel(f"validation {metric}", color="tab:blue")
        best = json.loads((run / "metrics.json").read_text()).get("best_epoch")
        if best is not None:
            right.axvline(best, color="tab:blue", linestyle=":", linewidth=1)
    left.set_title(f"{run.name}: training")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def group_bars(metrics: dict, title: str, out: Path) -> Path | None:
    test = metrics.get("test", {})
    if not test:
        return None
    keys = [k for k in next(iter(test.values())) if k != "users"]
    frame = pd.DataFrame({group: [values.get(k, float("nan")) for k in keys]
                          for group, values in test.items()}, index=keys)
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(max(7, len(keys) * 0.6), 4))
    frame.plot.bar(ax=axis)
    axis.set_title(title)
    axis.set_ylabel("test")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def comparison_chart(runs: list[Path], metric: str, out: Path) -> Path:
    names, values, speed = [], [], []
    for run in runs:
        m = json.loads((run / "metrics.json").read_text())
        names.append(run.name)
        values.append(m.get("test", {}).get("all", {}).get(metric, float("nan")))
        speed.append(m.get("timing", {}).get("seconds_per_epoch", float("nan")))
    plt = _pyplot()
    fig, (quality, cost) = plt.subplots(1, 2, figsize=(10, max(3, 0.5 * len(runs) + 1.5)))
    quality.barh(names, values, color="tab:blue")
    quality.set_xlabel(f"test {metric}")
    quality.invert_yaxis()
    cost.barh(names, speed, color="tab:gray")
    cost.set_xlabel("seconds per training epoch")
    cost.invert_yaxis()
    cost.set_yticklabels([])
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(runs: list[str | Path], metric: str = "ndcg@10", out: str | Path | None = None) -> Path:
    """Draw the pictures and write ``index.html``; returns the report folder."""
    paths = [Path(r) for r in runs]
    for run in paths:
        if not (run / "metrics.json").is_file():
            raise KgflowError(f"{run}: no metrics.json; report needs finished runs")
    folder = Path(out) if out else paths[0] / "report"
    folder.mkdir(parents=True, exist_ok=True)
    sections = []
    if len(paths) > 1:
        from kgflow.compare import compare

        header, rows, notes = compare(paths, metric)
        chart = comparison_chart(paths, metric, folder / "comparison.png")
        table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" + "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        sections.append(f"<h2>Comparison</h2><img src='{chart.name}'><table>{table}</table>"
                        + "".join(f"<p>{html.escape(n)}</p>" for n in notes))
    for i, run in enumerate(paths):
        metrics = json.loads((run / "metrics.json").read_text())
        curves = training_curves(run, metric, folder / f"{i:02d}-{run.name}-training.png")
        bars = group_bars(metrics, f"{run.name}: test metrics per group",
                          folder / f"{i:02d}-{run.name}-groups.png")
        t = metrics.get("timing", {})
        facts = (f"best epoch {metrics.get('best_epoch')} of {t.get('epochs')}; "
                 f"{t.get('seconds_per_epoch', 0):.3f} s per epoch; peak memory "
                 f"{t.get('peak_rss_mb', 0):.0f} MB; "
                 f"{metrics.get('parameters', {}).get('trainable', 0):,} trainable parameters; "
                 f"split {metrics.get('data_fingerprint')}")
        images = "".join(f"<img src='{p.name}'>" for p in (curves, bars) if p is not None)
        test = metrics.get("test", {})
        rows = "".join(f"<tr><td>{html.escape(g)}</td>" + "".join(
            f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{v}</td>" for v in values.values())
            + "</tr>" for g, values in test.items())
        head = "".join(f"<th>{html.escape(k)}</th>" for k in next(iter(test.values()), {}))
        sections.append(f"<h2>{html.escape(run.name)}</h2><p>{html.escape(facts)}</p>{images}"
                        f"<table><tr><th>group</th>{head}</tr>{rows}</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>kgflow report</title>"
            f"<style>{style}</style></head><body><h1>kgflow report</h1>{''.join(sections)}</body></html>")
    tmp = folder / ".index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(folder / "index.html")
    return folder
