#!/usr/bin/env bash
# The main job on the built-in digits dataset (scikit-learn's 8x8 digits): encode,
# inspect, verify and decode a .qdd file, then distill digits into a 2 KiB budget at
# 2 bits and evaluate the distilled set, then sweep the bit widths at that budget
# (table and plot, out/sweep/sweep.png). Outputs land in out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p out

echo "== 1. the codec: encode the 1,797 digits at 2 bits, inspect, verify, decode"
python - <<'PY'
import numpy as np
from sklearn.datasets import load_digits

d = load_digits()
np.savez("out/digits.npz", x=(d.images[:, None] / 16).astype(np.float32), y=d.target,
         classes=np.array([str(i) for i in range(10)]))
PY
quadd encode out/digits.npz -o out/digits-2bit.qdd --bits 2 --codebook kmeans --force
quadd inspect out/digits-2bit.qdd
quadd verify out/digits-2bit.qdd
quadd decode out/digits-2bit.qdd -o out/digits-2bit.npz --force

echo "== 2. distillation: digits into 2 KiB at 2 bits (QuADD), then the standard evaluation"
quadd distill --dataset digits --budget 2KiB --bits 2 --quantizer uniform \
    --iterations "${QUADD_DEMO_ITERS:-500}" --seed 0 -o out/digits-quadd-2KiB.qdd --force
quadd inspect out/digits-quadd-2KiB.qdd
quadd eval out/digits-quadd-2KiB.qdd --dataset digits --runs 3 --epochs 300

echo "== 3. the sweet spot: every bit width at 2 KiB, against the baselines at the same bytes"
quadd sweep --dataset digits --budget 2KiB --bits 1,2,4,32 --baselines subset,dm32 \
    --iterations "${QUADD_DEMO_SWEEP_ITERS:-100}" --runs 2 --epochs 100 --out out/sweep
echo "the plot: out/sweep/sweep.png"
