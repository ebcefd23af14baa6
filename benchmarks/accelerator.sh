#!/usr/bin/env bash
# One script for the first GPU or TPU this project gets (at most BUDGET_S seconds, default 480):
#   1. the device, recorded with every number (the tables' file starts with it);
#   2. the benchmark tables (step profile, convolutions vs PyTorch, models, App. C.4 layer
#      scaling, step compile time / memory, Sinkhorn) on that device;
#   3. with the time left, the main job: the named recipe (configs/discover.py) on rotated MNIST,
#      configs/default.py (a subgroup_cnn commits to one of the ten subgroups of the grid's
#      isometries, C4 expected, then that group's G-CNN trains for the rest of its 750 steps),
#      then the paper-protocol wscnn on rotated MNIST (quarter-epoch evaluations) until the
#      budget is spent.
# A run cut by the budget keeps its checkpoints and metrics (rerunning resumes it).
#
#   bash benchmarks/accelerator.sh [OUT_DIR]          # on the accelerator machine
#   QUICK=1 BUDGET_S=300 bash benchmarks/accelerator.sh /tmp/acc   # a CPU smoke test (~5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-accelerator_results}
budget=${BUDGET_S:-480}
python=${PYTHON:-python}
start=$(date +%s)
mkdir -p "$out"

left() { echo $(( budget - ($(date +%s) - start) )); }

"$python" - > "$out/device.txt" <<'EOF'
import platform
import jax
from benchmarks import common
print(f"device: {common.device_description()}")
print(f"devices: {jax.devices()}")
print(f"jax {jax.__version__}, python {platform.python_version()}")
EOF
cat "$out/device.txt"

bench_args=()
train_args=()
if [ "${QUICK:-0}" = "1" ]; then
  bench_args=(--quick)
  train_args=(--config.limit_train=512 --config.limit_test=200 --config.model_options.channels=4
              --config.eval_batch_size=100 --config.num_epochs=2)
fi

# Benchmarks: at most half of the budget, one table at a time (a table cut by the budget does
# not take the others with it). The step profile (XLA's per-op times) and the convolutions
# against PyTorch (its column stays empty without torch) come first.
bench_end=$(( $(date +%s) + budget / 2 ))
cp "$out/device.txt" "$out/benchmarks.txt"
for name in profile conv_limit models layer_scaling step_cost sinkhorn; do
  bench_left=$(( bench_end - $(date +%s) ))
  if [ "$bench_left" -lt 10 ]; then echo "no time left for benchmark $name" | tee -a "$out/benchmarks.txt"; continue; fi
  timeout "$bench_left" "$python" -m benchmarks.run "$name" "${bench_args[@]}" 2>&1 \
    | grep -v "^device: " | tee -a "$out/benchmarks.txt" \
    || echo "benchmark $name stopped by the budget" | tee -a "$out/benchmarks.txt"
done

run() {  # NAME CONFIG, then config overrides; trains until done or the budget is spent
  local name=$1 config=$2; shift 2
  local remaining
  remaining=$(left)
  if [ "$remaining" -lt 30 ]; then echo "no time left for $name"; return 0; fi
  timeout "$remaining" "$python" -m ds_symmetry.main --config="$config" \
    --workdir="$out/$name" --config.keep_checkpoints=12 --config.progress_bar=off \
    "$@" "${train_args[@]}" 2>&1 | tail -n 5 \
    || echo "$name stopped by the budget (checkpoints and metrics kept)"
}
# The main job, as the README's quick start runs it: the recipe's own settings, unchanged.
run recipe configs/default.py
# The paper's model and protocol (100 epochs): trains until the budget is spent.
run wscnn_paper configs/rotated_mnist.py:wscnn --config.evals_per_epoch=4
echo "results in $out ($(head -n 1 "$out/device.txt"))"
