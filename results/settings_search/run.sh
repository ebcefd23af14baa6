#!/bin/bash
# One run of the settings search (docs/learning_the_group.md §4–5), from the repository root:
#   bash results/settings_search/run.sh NAME CONFIG STEPS [overrides...]
# e.g. CONFIG = rotated_mnist.py:wscnn16. The run's files go to results/settings_search/NAME.
set -e
name=$1; config=$2; steps=$3; shift 3
cd "$(dirname "$0")/../.."
exec python -m ds_symmetry.main --config=configs/$config --workdir=results/settings_search/$name \
  --config.num_train_steps=$steps --config.evals_per_epoch=9 --config.limit_test=2000 --config.learning_rate=1e-3 \
  --config.eval_batch_size=1000 --config.checkpoint_every_steps=100000 --config.log_every_steps=50 \
  --config.save_figures=False "$@"
