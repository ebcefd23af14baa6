"""The paper's Tables 1–4 as grids (config variant, overrides, seeds, published numbers).

Numbers are copied from ``docs/paper_reference.md`` §6 (the paper's tables, as printed). Choices the
paper leaves open are made here once, and printed under each table:

  * seeds: the paper does not say how many seeds are behind its "±"; we use 0, 1, 2.
  * "+ ent" rows: the entropy weight is not given anywhere (paper, configs, rebuttal). We use
    ``entropy_weight=1e-3``. Scale: the summed entropy at init is ~5.7k (MNIST WSCNN) and ~13k
    (CIFAR WSResNet), so 1e-3 starts at ~5.7 / ~13 against a cross-entropy of ~2.3. The
    ``table1_entropy`` grid sweeps 1e-4 … 1e-2 on rotated MNIST.
  * "+ norm" rows are the released configs (``norm_weight=0.1``, ``entropy_weight=0``).
  * G-CNN width: Table 1 prints 103 K parameters, which is 16 channels (``gcnn16``), while the
    released config has 32 (410,890 parameters). Tables 1 and 3 run both; both are compared
    with the paper's G-CNN number.
  * Table 3/4 print their std as fractions (".002"); we show it as printed and compare means.
  * Table 4's WSCNN regulariser is not stated: norm only, as the released config.

Every row trains with the config file's full paper settings (100 MNIST / 200 CIFAR epochs):
GPU jobs. ``--set num_epochs=1 --set limit_train=2048`` makes CPU-sized versions.
"""

from __future__ import annotations

from experiments.identification import GRIDS as IDENTIFICATION_GRIDS
from experiments.same_budget import SAME_BUDGET
from experiments.spec import Grid, Paper, Row

ENTROPY_WEIGHT = 1e-3
SEEDS = (0, 1, 2)

_ENT = {"entropy_weight": ENTROPY_WEIGHT}
_GCNN_NOTE = "paper's 103 K = 16 channels"
_GCNN32_NOTE = "released config width (410,890 params); paper prints 103 K"

_COMMON_NOTES = (
    "seeds 0, 1, 2 (the paper does not state its number of seeds); ± is the sample std "
    "(ddof=1) over seeds; accuracy = final-epoch test accuracy (the paper does not say final "
    "or best; best is shown too).",
)


def _table1_rows(prefix: str, config_file: str, setting: str, paper: dict) -> list[Row]:
  cfg = f"configs/{config_file}.py"
  return [
      Row(f"{prefix}_cnn", f"{cfg}:cnn", "CNN", setting, paper=paper["cnn"]),
      Row(f"{prefix}_gcnn16", f"{cfg}:gcnn16", "GCNN (16 ch)", setting, paper=paper["gcnn"],
          note=_GCNN_NOTE),
      Row(f"{prefix}_gcnn32", f"{cfg}:gcnn", "GCNN (32 ch)", setting, paper=paper["gcnn"],
          note=_GCNN32_NOTE),
      Row(f"{prefix}_wscnn_norm", f"{cfg}:wscnn", "WSCNN + norm", setting,
          paper=paper["norm"]),
      Row(f"{prefix}_wscnn_norm_ent", f"{cfg}:wscnn", "WSCNN + norm + ent", setting,
          overrides=_ENT, paper=paper["ent"], note=f"entropy_weight={ENTROPY_WEIGHT:g} (ours)"),
  ]


TABLE1 = Grid(
    name="table1",
    title="Table 1: MNIST test accuracy (%), rotations and scaling",
    rows=tuple(
        _table1_rows("rotated", "rotated_mnist", "Rotations", {
            "cnn": Paper(98.48, "± .08", "412 K"),
            "gcnn": Paper(98.96, "± .14", "103 K"),
            "norm": Paper(97.56, "± .07", "410 K (+ 122 K)"),
            "ent": Paper(98.04, "± .11", "410 K (+ 122 K)"),
        }) + _table1_rows("scaled", "scaled_mnist", "Scaling", {
            "cnn": Paper(99.30, "± .01", "412 K"),
            "gcnn": Paper(97.50, "± .15", "103 K"),
            "norm": Paper(99.27, "± .04", "410 K (+ 122 K)"),
            "ent": Paper(99.24, "± .01", "410 K (+ 122 K)"),
        })),
    seeds=SEEDS,
    notes=_COMMON_NOTES + (
        f"'+ ent' uses entropy_weight={ENTROPY_WEIGHT:g}: the paper gives no value (our choice; "
        f"see the table1_entropy grid).",
        "GCNN: the paper's 103 K parameters is 16 channels; the released config uses 32. Both "
        "rows are compared with the paper's GCNN number.",
    ))

TABLE1_ENTROPY = Grid(
    name="table1_entropy",
    title="Entropy weight sweep, WSCNN + norm (+ ent) on rotated MNIST (Table 1's unknown λ)",
    rows=(
        Row("ent0", "configs/rotated_mnist.py:wscnn", "WSCNN + norm", "Rotations",
            paper=Paper(97.56, "± .07", "410 K (+ 122 K)")),
    ) + tuple(
        Row(f"ent{weight:g}", "configs/rotated_mnist.py:wscnn", f"WSCNN + norm + ent {weight:g}",
            "Rotations", overrides={"entropy_weight": weight},
            paper=Paper(98.04, "± .11", "410 K (+ 122 K)"))
        for weight in (1e-4, 1e-3, 1e-2)),
    seeds=SEEDS,
    notes=_COMMON_NOTES + ("every + ent row is compared with the paper's single '+ ent' number "
                           "(its weight is unknown).",))

TABLE2 = Grid(
    name="table2",
    title="Table 2: CIFAR-10 test accuracy (%), no augmentation",
    rows=(
        Row("resnet32", "configs/cifar10.py:resnet32", "CNN-32",
            paper=Paper(70.50, "± 0.62", "428 K")),
        Row("resnet64", "configs/cifar10.py:resnet64", "CNN-64",
            paper=Paper(76.29, "± 0.57", "1.66 M")),
        Row("resnet128", "configs/cifar10.py:resnet128", "CNN-128",
            paper=Paper(78.83, "± 0.01", "6.5 M")),
        Row("gresnet", "configs/cifar10.py:gresnet", "GCNN",
            paper=Paper(76.72, "± 0.26", "1.63 M")),
        Row("wsresnet_norm", "configs/cifar10.py:wsresnet", "WSCNN + norm",
            paper=Paper(78.80, "± 0.46", "1.63 M (+ 468 K)")),
        Row("wsresnet_norm_ent", "configs/cifar10.py:wsresnet", "WSCNN + norm + ent",
            overrides=_ENT, paper=Paper(76.80, "± 1.40", "1.63 M (+ 468 K)"),
            note=f"entropy_weight={ENTROPY_WEIGHT:g} (ours)"),
    ),
    seeds=SEEDS,
    notes=_COMMON_NOTES + (
        f"'+ ent' uses entropy_weight={ENTROPY_WEIGHT:g}: the paper gives no value (our choice).",
        "CIFAR-10 needs --set data_dir=/path/to/cifar-10-batches-py unless $DS_SYMMETRY_DATA "
        "or the cache has it.",
    ))

TABLE3 = Grid(
    name="table3",
    title="Table 3: MNIST with partial rotations, test accuracy (%)",
    rows=(
        Row("gcnn16_rot90", "configs/partial_rotation.py:gcnn16,90", "GCNN (16 ch)", "[0, 90°]",
            paper=Paper(98.84, "± .002"), note=_GCNN_NOTE),
        Row("gcnn16_rot180", "configs/partial_rotation.py:gcnn16,180", "GCNN (16 ch)",
            "[0, 180°]", paper=Paper(98.72, "± .001"), note=_GCNN_NOTE),
        Row("gcnn32_rot90", "configs/partial_rotation.py:gcnn,90", "GCNN (32 ch)", "[0, 90°]",
            paper=Paper(98.84, "± .002"), note=_GCNN32_NOTE),
        Row("gcnn32_rot180", "configs/partial_rotation.py:gcnn,180", "GCNN (32 ch)",
            "[0, 180°]", paper=Paper(98.72, "± .001"), note=_GCNN32_NOTE),
        Row("wscnn_rot90", "configs/partial_rotation.py:wscnn,90", "WSCNN", "[0, 90°]",
            paper=Paper(98.87, "± .001")),
        Row("wscnn_rot180", "configs/partial_rotation.py:wscnn,180", "WSCNN", "[0, 180°]",
            paper=Paper(99.25, "± .001")),
    ),
    seeds=SEEDS,
    notes=_COMMON_NOTES + (
        "the paper prints std as fractions ('± .002'): shown as printed; Δ compares means.",
        "regularisers and channel counts are not stated for Table 3: released settings (norm "
        "0.1, entropy 0); GCNN at 16 and 32 channels.",
    ))

TABLE4 = Grid(
    name="table4",
    title="Table 4: CIFAR-10 with random horizontal flips (train and test), test accuracy (%)",
    rows=(
        Row("resnet64", "configs/flipped_cifar10.py:resnet64", "CNN-64",
            paper=Paper(79.81, "± .001", "1.7 M")),
        Row("resnet128", "configs/flipped_cifar10.py:resnet128", "CNN-128",
            paper=Paper(82.60, "± .001", "6.5 M")),
        Row("gresnet", "configs/flipped_cifar10.py:gresnet", "GCNN",
            paper=Paper(76.05, "± .004", "1.6 M")),
        Row("wsresnet", "configs/flipped_cifar10.py:wsresnet", "WSCNN",
            paper=Paper(82.38, "± .003", "1.6 M (+ 468 K)"), note="norm only (not stated)"),
    ),
    seeds=SEEDS,
    notes=_COMMON_NOTES + (
        "the paper prints std as fractions ('± .003'): shown as printed; Δ compares means.",
        "CIFAR-10 needs --set data_dir=/path/to/cifar-10-batches-py unless $DS_SYMMETRY_DATA "
        "or the cache has it.",
    ))

# A CPU-sized grid for tests and for trying the harness: 256 MNIST images, 1 epoch.
_SMOKE = {"limit_train": 256, "limit_test": 200, "num_epochs": 1, "batch_size": 64,
          "eval_batch_size": 100, "log_every_steps": 2, "progress_bar": "off",
          "save_figures": False}
SMOKE = Grid(
    name="smoke",
    title="Smoke grid: tiny models, 256 rotated-MNIST images, 1 epoch (CPU, seconds per run)",
    rows=(
        Row("cnn", "configs/rotated_mnist.py:cnn8", "CNN (8 ch)", "Rotations",
            overrides=_SMOKE),
        Row("wscnn", "configs/rotated_mnist.py:wscnn4", "WSCNN (4 ch)", "Rotations",
            overrides=_SMOKE),
    ),
    seeds=(0, 1),
    notes=("a harness check, not a result: accuracies after 4 steps are near chance.",))

GRIDS: dict[str, Grid] = {grid.name: grid for grid in (
    TABLE1, TABLE2, TABLE3, TABLE4, TABLE1_ENTROPY, SMOKE, SAME_BUDGET, *IDENTIFICATION_GRIDS)}
