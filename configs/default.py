"""CPU-sized default: a narrow wscnn on rotated MNIST, about 10 minutes on 2 CPU cores.

  python -m ds_symmetry.main --config=configs/default.py --workdir=/tmp/ds_default

Deviations from the paper's settings (configs/rotated_mnist.py:wscnn), chosen so a
few-minute CPU run learns something meaningful (research/data.md: under the reference
settings the wscnn is near 50% after 2 full epochs):
  * 16 channels instead of 32 (4x fewer FLOPs per step);
  * the first 24k train images, 3 epochs (1,125 steps), batch 64;
  * weight learning rate 1e-3 instead of 1e-2 (logits lr 1e-2 and norm weight 0.1 as in the
    paper; a logits lr of 0.1 was not better over 250 steps).
Expect a modest accuracy: the wscnn learns slowly at small budgets (measured: 49.1% test
accuracy after these 3 epochs, 5.1 min wall time in total on a shared 2-core machine; 34.8%
after 2 epochs). Its stacks stay far
from any group this early. The paper's 97.6% takes 100 full epochs on a GPU.
"""

from ds_symmetry.train.config import base_config


def get_config(arg=None):
  del arg
  config = base_config()
  config.model = "wscnn"
  config.model_options.channels = 16
  config.protocol = "rotated_mnist"
  config.limit_train = 24000
  config.num_epochs = 3
  config.batch_size = 64
  config.learning_rate = 1e-3
  config.eval_batch_size = 1000
  config.checkpoint_every_steps = 200
  config.log_every_steps = 50
  return config
