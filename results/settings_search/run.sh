#!/bin/bash
# usage: run.sh NAME VARIANT STEPS [overrides...]
name=$1; variant=$2; steps=$3; shift 3
cd /work/main
exec .venv/bin/python -m ds_symmetry.main --config=configs/rotated_mnist.py:$variant --workdir=/work/proto/$name \
  --config.num_train_steps=$steps --config.evals_per_epoch=9 --config.limit_test=2000 --config.learning_rate=1e-3 \
  --config.eval_batch_size=1000 --config.checkpoint_every_steps=100000 --config.log_every_steps=50 \
  --config.save_figures=False --config.model_options.logits_init=balanced_uniform "$@" > /work/proto/$name.log 2>&1
