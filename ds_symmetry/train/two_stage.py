"""Identify, then train (``config.discovery.then_train``): two ordinary runs in one workdir.

::

  <workdir>/identify/   the subgroup selector, ended at its commitment (discovery.stop_after)
  <workdir>/trained/    the named subgroup's exact G-CNN (the plain CNN for the trivial group;
                        variants.answer_config), fresh weights, the whole budget, same seed
  <workdir>/config.json the config as given; results.json: the two joined

The second stage is the same run as the fixed prior of the named group
(``configs/fixed_group.py:<data>,<group>`` at that seed). Each stage resumes on its own:
rerunning the command finishes whichever was cut off (a finished stage only reloads its
results). The top-level ``results.json`` is written last, so a run cut off in between is
never taken for a finished one.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import jax
import ml_collections

from ds_symmetry import run_files, workdir_lock
from ds_symmetry.train import config as config_lib
from ds_symmetry.train import trainer
from ds_symmetry.train.variants import answer_config, answer_model

IDENTIFY, TRAINED = "identify", "trained"
"""The stages' run directories under the workdir."""


def identify_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The first stage's config: ``config`` ending at the commitment (``discovery.stop_after``)."""
  first = copy.deepcopy(config)
  first.discovery.then_train = False
  first.discovery.stop_after = True
  return first


def identify_then_train(config: ml_collections.ConfigDict, workdir: str, *,
                        adopt_workdir: bool = False) -> dict[str, Any]:
  """Runs both stages (``trainer.train_and_evaluate`` each) and returns the joined summary
  also written to ``workdir/results.json``: the second stage's, with the first stage's
  ``discovery`` record, the given ``config``, both stages' models, steps, wall times and test
  accuracies under ``"stages"`` (keyed by :data:`IDENTIFY` and :data:`TRAINED`, also their run
  directories' names) and the sums as ``"step"`` and ``"wall_time_s"``.

  Raises:
    ValueError: a bad config or workdir (as ``train_and_evaluate``), or a first stage that
      ended without committing to a subgroup (nothing to train; its run is kept).
  """
  config_lib.validate_config(config)
  if not config.discovery.then_train:
    raise ValueError("config.discovery.then_train: False is not accepted here; expected True "
                     "(train_and_evaluate runs a config without it)")
  trainer._check_writable(workdir)  # pylint: disable=protected-access
  first_process = trainer._first_process(config)  # pylint: disable=protected-access
  claim = workdir_lock.claim_workdir(
      workdir, adopt=adopt_workdir, lock=first_process,
      coordinator=trainer._coordinator(config))  # pylint: disable=protected-access
  try:
    if claim.kind != "adopted":
      trainer._check_same_config(workdir, config)  # pylint: disable=protected-access
    if first_process:
      run_files.write_config(workdir, run_files.config_as_dict(config))
    first = trainer.train_and_evaluate(identify_config(config), os.path.join(workdir, IDENTIFY))
    found = first.get("discovery")
    if not found:
      raise ValueError(
          f"{os.path.join(workdir, IDENTIFY)}: the selector ended at step {first.get('step')} "
          f"without committing to a subgroup (discovery.when_within="
          f"{config.discovery.when_within}); nothing to train. Its run is kept")
    second = trainer.train_and_evaluate(answer_config(config, answer_model(found["group"])),
                                        os.path.join(workdir, TRAINED))
    stages = {stage: {"model": summary["model"],  # each stage's run is <workdir>/<stage>
                      "step": summary["step"], "wall_time_s": summary["wall_time_s"],
                      "final_test_accuracy": summary.get("final_test_accuracy")}
              for stage, summary in ((IDENTIFY, first), (TRAINED, second))}
    results = dict(second, discovery=found, config=run_files.config_as_dict(config),
                   stages=stages, step=first["step"] + second["step"],
                   wall_time_s=first["wall_time_s"] + second["wall_time_s"])
    if jax.process_index() == 0:
      run_files.write_results(workdir, results)
    return results
  finally:
    claim.release()
