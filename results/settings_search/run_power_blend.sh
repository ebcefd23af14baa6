#!/bin/bash
# The 32-channel probes of docs/learning_the_group.md §9 (the generator's choice within the first
# 104–312 steps; about 2 s per step on 2 idle cores). From the repository root:
#   bash results/settings_search/run_power_blend.sh
# pb32_* and pbc32_* ran before power_blend merged the 90° and 270° rotations into one
# candidate (commits ea6f0ec and c91ac60: 8 candidates, logits [1, 8]); today's code blends
# 7 candidates, so those two groups of runs are reproduced exactly only at those commits.
set -e
run="bash $(dirname "$0")/run.sh"
B="--config.model_options.elements=power_blend --config.model_options.constraint=isometries"
B="$B --config.model_options.logits_init=zeros"
D="--config.model_options.kernel_mask=disk --config.model_options.weight_init=se2cnn"
# Group layers from the soft Cayley table (as the powers variant), weights lr 1e-3.
for s in 0 1 2; do
  $run pb32_lr5e-1_disk_se2_s$s rotated_mnist.py:wscnn 104 $B $D \
    --config.model_options.sharing=tied_cayley --config.logits_learning_rate=5e-1 --config.seed=$s
done
for s in 0 1 2; do  # seed 2 was stopped after its step-260 evaluation
  $run pb32_lr1e-1_disk_se2_s$s rotated_mnist.py:wscnn 312 $B $D \
    --config.model_options.sharing=tied_cayley --config.logits_learning_rate=1e-1 --config.seed=$s \
    --config.evals_per_epoch=18
done
# Group layers tied by the exponents' cyclic law (sharing=tied_cyclic), weights lr 1e-3.
$run pbc32_lr5e-1_s0 rotated_mnist.py:wscnn 104 $B $D --config.model_options.sharing=tied_cyclic \
  --config.logits_learning_rate=5e-1
# With the G-CNN row's weight learning rate (1e-2): tied_cyclic and tied_cayley (the tied_cayley
# run was stopped after its step-52 evaluation, having committed to the identity).
W="--config.learning_rate=1e-2 --config.evals_per_epoch=18"
for sh in tied_cyclic tied_cayley; do
  $run pd32_${sh}_wlr1e-2_lr2e-1_s0 rotated_mnist.py:wscnn 156 $B $D $W \
    --config.model_options.sharing=$sh --config.logits_learning_rate=2e-1
done
$run pd32_tied_cyclic_wlr1e-2_lr2e-1_s1 rotated_mnist.py:wscnn 156 $B $D $W \
  --config.model_options.sharing=tied_cyclic --config.logits_learning_rate=2e-1 --config.seed=1
for s in 1 0; do
  $run pd32_tied_cyclic_wlr1e-2_lr1e-1_s$s rotated_mnist.py:wscnn 208 $B $D $W \
    --config.model_options.sharing=tied_cyclic --config.logits_learning_rate=1e-1 --config.seed=$s
done
