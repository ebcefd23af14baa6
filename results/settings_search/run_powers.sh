#!/bin/bash
# The powers-of-one-generator runs of docs/learning_the_group.md §5 (16 channels, 300 steps
# each, about 3 minutes per run on 2 idle cores). From the repository root:
#   bash results/settings_search/run_powers.sh
set -e
run="bash $(dirname "$0")/run.sh"
BU="--config.model_options.logits_init=balanced_uniform"
PW="--config.model_options.elements=powers --config.model_options.sharing=tied_cayley"
ISO="$PW --config.model_options.constraint=isometries"
Z="$ISO --config.model_options.logits_init=zeros"
$run pw_iso_lr5e-2 rotated_mnist.py:wscnn16 300 $ISO --config.logits_learning_rate=5e-2
$run pw_sink_iso1 rotated_mnist.py:wscnn16 300 $PW $BU --config.isometry_weight=1 --config.logits_learning_rate=1e-2
$run pw_iso_zeros rotated_mnist.py:wscnn16 300 $Z --config.logits_learning_rate=5e-2
$run pwz_lr2e-1 rotated_mnist.py:wscnn16 300 $Z --config.logits_learning_rate=2e-1
$run pwz_lr2e-1_s1 rotated_mnist.py:wscnn16 300 $Z --config.logits_learning_rate=2e-1 --config.seed=1
$run pwz_lr2e-1_s2 rotated_mnist.py:wscnn16 300 $Z --config.logits_learning_rate=2e-1 --config.seed=2
$run pwz_lr5e-1 rotated_mnist.py:wscnn16 300 $Z --config.logits_learning_rate=5e-1
$run gcnn16 rotated_mnist.py:gcnn16 300
$run pwz_unrot mnist.py:wscnn16 300 $Z --config.logits_learning_rate=2e-1
$run pwz_scaled scaled_mnist.py:wscnn16 300 $Z --config.logits_learning_rate=2e-1
$run pwz_lr1e-1 rotated_mnist.py:wscnn16 300 $Z --config.logits_learning_rate=1e-1
$run pwz_lr1e-1_disk_se2 rotated_mnist.py:wscnn16 300 $Z --config.logits_learning_rate=1e-1 --config.model_options.kernel_mask=disk --config.model_options.weight_init=se2cnn
