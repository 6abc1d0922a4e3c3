#!/usr/bin/env bash
# The GPU check: one short script for a CUDA machine (kgflow's `device` tool, or any GPU box).
#   bash benchmarks/gpu_check.sh [WORK]      # WORK: where the L data and runs go (default /tmp/kgflow-gpu)
# 1. the GPU-marked tests (CUDA training, evaluation and DDP on every visible GPU);
# 2. one epoch of sampled LightGCN on the L data (1M users, 100k items, 20M interactions) on one
#    GPU, then on every GPU with DDP: seconds per epoch, exact full-ranking evaluation seconds and
#    peak GPU memory, from each run's metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-/tmp/kgflow-gpu}"
mkdir -p "$WORK"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
GPUS=$(python -c "import torch; print(torch.cuda.device_count())")
echo "visible GPUs: $GPUS"
python -m pytest -q -m gpu tests
python benchmarks/scale.py generate --size L --work "$WORK"
python benchmarks/scale.py run --size L --work "$WORK" --models lightgcn-sampled \
    --set trainer.accelerator=gpu --set trainer.devices=1 --set eval.batch_users=8192
if [ "$GPUS" -gt 1 ]; then
  python benchmarks/scale.py run --size L --work "$WORK" --models lightgcn-sampled \
      --set trainer.accelerator=gpu --set "trainer.devices=$GPUS" --set trainer.strategy=ddp \
      --set eval.batch_users=8192
fi
python benchmarks/scale.py table --work "$WORK"
python - "$WORK" <<'PY'
import json, sys, pathlib
for line in (pathlib.Path(sys.argv[1]) / "results.jsonl").read_text().splitlines():
    r = json.loads(line)
    print(r["model"], r.get("processes"), "peak GPU MB:", r.get("peak_gpu_mb"))
PY
