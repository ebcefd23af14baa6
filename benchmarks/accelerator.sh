#!/usr/bin/env bash
# One script for the first GPU or TPU this project gets (at most BUDGET_S seconds, default 480):
#   1. the device, recorded with every number (the tables' file starts with it);
#   2. the benchmark tables (step profile, convolutions vs PyTorch, models, App. C.4 layer
#      scaling, step compile time / memory, Sinkhorn) on that device;
#   3. with the time left, the paper-protocol wscnn on rotated MNIST (quarter-epoch evaluations,
#      checkpoints kept), then the same-budget study's provisional best variant.
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

run() {  # NAME, then config overrides; trains until the budget is spent
  local name=$1; shift
  local remaining
  remaining=$(left)
  if [ "$remaining" -lt 30 ]; then echo "no time left for $name"; return 0; fi
  timeout "$remaining" "$python" -m ds_symmetry.main --config=configs/rotated_mnist.py:wscnn \
    --workdir="$out/$name" --config.evals_per_epoch=4 --config.keep_checkpoints=12 \
    --config.progress_bar=off "$@" "${train_args[@]}" 2>&1 | tail -n 5 \
    || echo "$name stopped by the budget (checkpoints and metrics kept)"
}
run wscnn_paper
# The same-budget study's best variant (experiments/same_budget.py, BEST): the lifting stack is
# the powers of one learned isometry-blend generator, group layers from its Cayley table.
run wscnn_best --config.learning_rate=1e-3 --config.logits_learning_rate=1e-1 \
  --config.model_options.factorise=kronecker --config.model_options.tie=cayley \
  --config.model_options.elements=powers \
  --config.model_options.constraint=isometries --config.model_options.logits_init=zeros
echo "results in $out ($(head -n 1 "$out/device.txt"))"
