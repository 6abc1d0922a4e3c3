#!/usr/bin/env python3
"""How kgflow's costs grow with the data: a seeded power-law generator and timed runs.

    python benchmarks/scale.py generate --size S --work W      # data + pipelines under W/S
    python benchmarks/scale.py run --size S --work W --models mf lightgcn lightgcn-sampled
    (models: mf, lightgcn, lightgcn-sampled, kgat-sampled; mf-sparse and lightgcn-sparse train
    with optimizer: sparse_adam, which updates only the embedding rows a batch used)
    python benchmarks/scale.py table --work W                   # markdown table of every result

Sizes: S (10k users, 5k items, 500k interactions), M (100k, 20k, 5M), L (1M, 100k, 20M). Users'
activity and items' popularity follow power laws, users prefer items of their own cluster (so there
is something to learn), items have a KG (brand, category, tags) and a title. Each model runs one
epoch in its own process (``kgflow run``, no early stopping) and reports, from its metrics.json:
load+split seconds, seconds per epoch, seconds per exact full-ranking evaluation (every validation
user against every item) and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIZES = {"S": (10_000, 5_000, 500_000), "M": (100_000, 20_000, 5_000_000),
         "L": (1_000_000, 100_000, 20_000_000)}
CLUSTERS = 20

#: model -> (pipeline fragment, training batch size). Large catalogues train with large batches,
#: as practitioners do; every model of a size sees the same data and split.
MODELS = {
    "mf": ({"graph": "user_item", "encoders": {"graph": {"name": "mf", "params": {"dim": 64}}}}, 8192),
    "lightgcn": ({"graph": "user_item",
                  "encoders": {"graph": {"name": "lightgcn", "params": {"dim": 64, "layers": 2}}}}, 8192),
    "lightgcn-sampled": ({"graph": "user_item",
                          "encoders": {"graph": {"name": "lightgcn", "params": {"dim": 64, "layers": 2}}},
                          "train": {"sampling": {"method": "neighbor", "fanouts": [10, 10]}}}, 8192),
    # row-sparse updates: a step reads and writes only its batch's rows (linear training cost)
    "mf-sparse": ({"graph": "user_item", "encoders": {"graph": {"name": "mf", "params": {"dim": 64}}},
                   "train": {"optimizer": "sparse_adam", "sampling": {"method": "neighbor", "fanouts": []}}},
                  8192),
    "lightgcn-sparse": ({"graph": "user_item",
                         "encoders": {"graph": {"name": "lightgcn", "params": {"dim": 64, "layers": 2}}},
                         "train": {"optimizer": "sparse_adam",
                                   "sampling": {"method": "neighbor", "fanouts": [10, 10]}}}, 8192),
    "kgat-sampled": ({"graph": {"name": "collaborative_kg", "params": {"inverse_relations": False}},
                      "encoders": {"graph": {"name": "kgat", "params": {"dim": 64, "layers": [64],
                                                                        "kg_direction": "stated"}}},
                      "train": {"sampling": {"method": "neighbor", "fanouts": [10]}}}, 8192),
}


def generate(size: str, folder: Path, seed: int = 0) -> dict:
    """Write interactions, items (with titles), KG triples and item links as Parquet."""
    n_users, n_items, n_inter = SIZES[size]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    user_cluster = rng.integers(0, CLUSTERS, n_users)
    item_cluster = rng.integers(0, CLUSTERS, n_items)
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** 0.8
    order = np.argsort(item_cluster, kind="stable")
    bounds = np.searchsorted(item_cluster[order], np.arange(CLUSTERS + 1))
    weight = rng.pareto(1.5, n_users) + 1

    def draw(n: int) -> pd.DataFrame:
        # activity: every user at least 5 draws, the rest shared by a Pareto weight
        counts = 5 + rng.multinomial(max(n - 5 * n_users, 0), weight / weight.sum())
        users = np.repeat(np.arange(n_users), counts)
        # popularity: Zipf-like; 70% of a user's items come from the user's own cluster
        own = rng.random(len(users)) < 0.7
        items = np.empty(len(users), dtype=np.int64)
        items[~own] = rng.choice(n_items, int((~own).sum()), p=popularity / popularity.sum())
        for c in range(CLUSTERS):  # one vectorised draw per cluster
            members = order[bounds[c]:bounds[c + 1]]
            pick = own & (user_cluster[users] == c)
            p = popularity[members] / popularity[members].sum()
            items[pick] = members[rng.choice(len(members), int(pick.sum()), p=p)]
        return pd.DataFrame({"user": users, "item": items})

    # repeated draws of a popular item collapse into one interaction: draw until there are enough
    frame = draw(n_inter).drop_duplicates(ignore_index=True)
    while len(frame) < n_inter:
        more = draw(2 * (n_inter - len(frame)) + 5 * n_users)
        frame = pd.concat([frame, more]).drop_duplicates(ignore_index=True)
    frame = frame.sample(n=n_inter, random_state=seed).reset_index(drop=True)
    frame["timestamp"] = rng.integers(0, 10**9, len(frame))
    frame.to_parquet(folder / "interactions.parquet", index=False)
    words = np.array([f"w{c}_{j}" for c in range(CLUSTERS) for j in range(8)])
    titles = [" ".join(words[c * 8 + rng.integers(0, 8, 3)]) for c in item_cluster]
    pd.DataFrame({"item": np.arange(n_items), "title": titles}).to_parquet(folder / "items.parquet", index=False)
    brands = rng.integers(0, max(n_items // 50, 1), n_items)
    tags = rng.integers(0, 2000, (n_items, 3))
    heads = np.concatenate([np.arange(n_items)] * 5)
    relations = np.repeat(["brand", "category", "tag", "tag", "tag"], n_items)
    tails = np.concatenate([[f"b{b}" for b in brands], [f"c{c}" for c in item_cluster],
                            *[[f"t{t}" for t in tags[:, j]] for j in range(3)]])
    kg = pd.DataFrame({"head": [f"e{h}" for h in heads], "relation": relations, "tail": tails})
    kg.drop_duplicates(ignore_index=True).to_parquet(folder / "kg.parquet", index=False)
    pd.DataFrame({"item": np.arange(n_items), "entity": [f"e{i}" for i in range(n_items)]}).to_parquet(
        folder / "links.parquet", index=False)
    info = {"size": size, "users": n_users, "items": n_items, "interactions": int(len(frame)),
            "kg_triples": int(len(kg)), "seed": seed}
    (folder / "data.json").write_text(json.dumps(info, indent=2))
    return info


def pipeline(size: str, model: str, folder: Path) -> dict:
    fragment, batch = MODELS[model]
    spec = {
        "kgflow": 1, "name": f"scale-{size}-{model}", "seed": 1,
        "dataset": {"name": "tabular", "params": {
            "name": f"scale-{size}",
            "interactions": {"path": str(folder / "interactions.parquet"), "user": "user", "item": "item",
                             "timestamp": "timestamp"},
            "items": {"path": str(folder / "items.parquet"), "id": "item"},
            "kg": {"path": str(folder / "kg.parquet")},
            "links": {"path": str(folder / "links.parquet"), "item": "item", "entity": "entity"}}},
        "preprocess": {"rating_threshold": None},
        "split": {"method": "random", "ratios": [0.8, 0.1, 0.1]},
        "objective": {"loss": "bpr", "l2": 1.0e-4},
        # one epoch, no validation inside it: the run then validates and tests once each
        "train": {"epochs": 1, "eval_every": 2, "lr": 1.0e-3, "batch_size": batch, "early_stopping": None},
        "eval": {"ks": [10, 20], "batch_users": 2048},
    }
    for key, value in fragment.items():
        if key == "train":
            spec["train"].update(value)
        else:
            spec[key] = value
    return spec


def run(size: str, models: list[str], work: Path, extra: list[str]) -> None:
    import yaml

    folder = work / size
    if not (folder / "data.json").is_file():
        print(f"generating {size} ...", flush=True)
        t = time.perf_counter()
        info = generate(size, folder)
        print(f"  {info} in {time.perf_counter() - t:.0f} s", flush=True)
    for model in models:
        spec = pipeline(size, model, folder)
        path = folder / f"{model}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        out = folder / "runs" / model
        cmd = [sys.executable, "-m", "kgflow", "run", str(path), "--out", str(out), "--overwrite",
               "--no-progress", *extra]
        print(" ".join(cmd), flush=True)
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if done.returncode:
            print(done.stderr[-4000:], flush=True)
            record = {"size": size, "model": model, "error": done.stderr.strip().splitlines()[-1:]}
        else:
            metrics = json.loads((out / "metrics.json").read_text())
            timing = metrics["timing"]
            record = {"size": size, "model": model, "processes": metrics.get("processes", 1),
                      "prepare_s": timing.get("prepare_seconds"),
                      "epoch_s": timing["seconds_per_epoch"], "eval_s": timing["eval_seconds"],
                      "eval_users": metrics["valid"]["all"]["users"],
                      "peak_rss_mb": timing["peak_rss_mb"], "peak_gpu_mb": timing.get("peak_gpu_mb"),
                      "wall_s": wall,
                      "train": metrics["split"]["train"], "items": metrics["split"]["items"],
                      "valid_ndcg@10": metrics["valid"]["all"]["ndcg@10"], "extra": extra}
        print(json.dumps(record), flush=True)
        with open(work / "results.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")


def table(work: Path) -> None:
    latest = {}  # the last run of each (size, model, processes, extra settings) counts
    for line in (work / "results.jsonl").read_text().splitlines():
        if line:
            r = json.loads(line)
            latest[(r["size"], r["model"], r.get("processes"), tuple(r.get("extra", [])))] = r
    rows = sorted(latest.values(), key=lambda r: ("SML".index(r["size"]), r["model"]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print("| size | model | settings | processes | train pairs | load+split s | s/epoch | "
          "eval s (users x items) | peak RSS MB | valid NDCG@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        settings = " ".join(v for v in r.get("extra", []) if v != "--set") or "defaults"
        if "error" in r:
            print(f"| {r['size']} | {r['model']} | {settings} | | | failed: {r['error']} | | | | |")
            continue
        print(f"| {r['size']} | {r['model']} | {settings} | {r['processes']} | {r['train']:,} | "
              f"{r['prepare_s']:.1f} | {r['epoch_s']:.1f} | {r['eval_s']:.1f} ({r['eval_users']:,} x "
              f"{r['items']:,}) | {r['peak_rss_mb']:,.0f} | {r['valid_ndcg@10']:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["generate", "run", "table"])
    ap.add_argument("--size", choices=list(SIZES), default="S")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["mf", "lightgcn"], choices=list(MODELS))
    ap.add_argument("--set", dest="extra", action="append", default=[],
                    help="extra --set for every run (e.g. trainer.devices=2)")
    args = ap.parse_args()
    extra = [part for value in args.extra for part in ("--set", value)]
    if args.action == "generate":
        print(generate(args.size, args.work / args.size))
    elif args.action == "run":
        run(args.size, args.models, args.work, extra)
    else:
        table(args.work)


if __name__ == "__main__":
    main()
