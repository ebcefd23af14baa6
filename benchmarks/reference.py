"""The authors' PyTorch implementation, timed in the same process as ours (optional).

The reference code (github.com/computri/learnable-weight-sharing) is not part of this
repository and not a dependency. Point ``DS_SYMMETRY_REFERENCE_REPO`` at a checkout of it (and
install PyTorch, the ``bench`` extra) and the ``training`` benchmark times the reference's
training step side by side with ours, calls alternating, instead of quoting the step times
recorded on an idle machine (``RECORDED_MS``). Only its model files are imported (``models``,
``gconv``, ``wsmodules``, ``se2cnn``); ``wandb`` (imported by ``models.py`` for logging) is
stubbed when absent.

The step mirrors its ``tasks.Classification.training_step`` + Lightning's optimizer step, minus
data loading: random 28×28 images at batch 64, cross-entropy (+ 0.1 × the norm loss for the
WSCNN, whose entropy weight is 0 in its MNIST config), backward, AdamW (lr 1e-2, weight decay
1e-4; the WSCNN's representation logits in their own group). Model settings from its
``configs/mnist/*.yml``: CNN 64 channels; GCNN and WSCNN 32 channels, 4 elements, kernel 5;
WSCNN 20 Sinkhorn iterations (early exit), fixed identity, uniform logits.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Callable, Optional

# Step times of the reference on this machine kind, measured on an idle machine
# (docs/data.md §2): what the tables compare against when the reference is not available.
RECORDED_MS = {"cnn": 105.0, "gcnn": 380.0, "wscnn": 390.0}
ENV = "DS_SYMMETRY_REFERENCE_REPO"


def available() -> Optional[str]:
  """The reference checkout's path if it and PyTorch are available, else None."""
  path = os.environ.get(ENV)
  if not path or not os.path.isfile(os.path.join(path, "wsmodules.py")):
    return None
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return None
  return path


def _import_models(path: str):
  if path not in sys.path:
    sys.path.insert(0, path)
  if "wandb" not in sys.modules:
    try:
      import wandb  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
      sys.modules["wandb"] = types.ModuleType("wandb")
  import gconv  # pylint: disable=import-outside-toplevel,import-error
  import models  # pylint: disable=import-outside-toplevel,import-error
  return models, gconv


def make_step(name: str, batch: int = 64, path: Optional[str] = None) -> Callable[[], object]:
  """A closure running one reference training step of ``name`` (cnn / gcnn / wscnn)."""
  import torch  # pylint: disable=import-outside-toplevel
  path = path or available()
  if path is None:
    raise RuntimeError(f"set {ENV} to a checkout of the reference and install torch")
  torch.set_num_threads(2)
  torch.manual_seed(0)
  models, gconv = _import_models(path)
  if name == "cnn":
    model = models.CNN(in_channels=1, out_channels=10, kernel_size=5, num_hidden=4,
                       hidden_channels=64, device="cpu")
  elif name == "gcnn":
    model = gconv.GroupEquivariantCNN(group_size=4, in_channels=1, out_channels=10,
                                      kernel_size=5, num_hidden=4, hidden_channels=32)
  elif name == "wscnn":
    model = models.WSCNN(in_channels=1, out_channels=10, kernel_size=5, num_hidden=4,
                         group_size=4, hidden_channels=32, device="cpu", n_iter=20,
                         init_mode="rand", fix_identity=True)
  else:
    raise ValueError(f"no reference model for {name!r}")
  groups = [{"params": p, "lr": 1e-2} for _, p in model.named_parameters()]
  optimizer = torch.optim.AdamW(groups, lr=1e-2, weight_decay=1e-4)
  images = torch.randn(batch, 1, 28, 28)
  labels = torch.randint(0, 10, (batch,))
  loss_fn = torch.nn.CrossEntropyLoss()

  def step():
    optimizer.zero_grad()
    loss = loss_fn(model(images), labels)
    if name == "wscnn":
      norm_loss, _ = model.get_loss()
      loss = loss + 0.1 * norm_loss
    loss.backward()
    optimizer.step()
    return loss.detach()

  return step


def main(argv=None) -> int:
  """``python -m benchmarks.reference [cnn gcnn wscnn] [--repeats N]``: the reference's step
  times alone in this process (no JAX thread pool beside PyTorch's), medians in ms."""
  import argparse  # pylint: disable=import-outside-toplevel
  from benchmarks.common import median_time  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", default=list(RECORDED_MS))
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args(argv)
  if available() is None:
    parser.error(f"set {ENV} to a checkout of the reference and install torch")
  for name in args.names:
    seconds = median_time(make_step(name), repeats=args.repeats, warmup=2)
    print(f"{name}: reference step {1e3 * seconds:.1f} ms (median of {args.repeats}, batch 64, "
          "2 threads)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
