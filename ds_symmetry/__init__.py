"""ds_symmetry: learning symmetries via weight sharing with doubly stochastic tensors.

Layers of the package (imports point down only)::

  ds_symmetry.train     trainer: optimizer, step, evaluation, checkpoints, metrics, sharding
  ds_symmetry.data      datasets (IDX, CIFAR, TFDS) and symmetry transforms in jnp
  ds_symmetry.models    the paper's networks
  ds_symmetry.nn        Flax NNX layers that own parameters and call ``ops``
  ds_symmetry.ops       pure jnp functions: Sinkhorn, group representations, kernel stacks
  ds_symmetry.analysis  what a learned stack became (nearest permutation / group)
  ds_symmetry.testing   public equivariance helpers
  ds_symmetry.toy_problems  data generators of the symmetry-discovery toy problems (App. B)
  ds_symmetry.run_files  a run's workdir files: names, atomic writers, readers (numpy only)
"""

from ds_symmetry import _xla_flags

_xla_flags.maybe_enable_fast_cpu_convolutions()

__version__ = "0.1.0"
