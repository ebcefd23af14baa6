"""experiments.identify_then_train: the two stages' commands, the group read from stage 1, and
the record it writes (a fake runner stands in for ds_symmetry.main)."""

import json
import os

import numpy as np
import pytest

from ds_symmetry import run_files
from experiments import identify_then_train as itt


def _fake_runner(group, calls, accuracy=0.765, fail_stage=None):
  def run(command):
    calls.append(list(command))
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    stage = os.path.basename(workdir)
    if stage == fail_stage:
      return 3
    os.makedirs(workdir, exist_ok=True)
    if stage == itt.IDENTIFY and group is not None:
      run_files.save_discovered(workdir, {"lifting": np.zeros((1, 2, 2))},
                                {"group": group, "step": 320, "wall_s": 51.5})
    if stage == itt.TRAINED:
      run_files.write_results(workdir, {"status": "finished", "step": 750,
                                        "wall_time_s": 600.0, "final_test_accuracy": accuracy})
    return 0
  return run


def test_stage_two_trains_the_group_stage_one_named_at_the_same_seed(tmp_path, capsys):
  calls = []
  assert itt.main(["--data=rotated_mirrored", "--seed=7", f"--workdir={tmp_path}", "--",
                   "--config.progress_bar=off"], run=_fake_runner("D4", calls)) == 0
  identify, trained = calls
  assert identify[3:] == ["--config=configs/discover.py:rotated_mirrored,16",
                          "--config.discovery.stop_after=True",
                          "--config.discovery.keep_backbone=False",
                          f"--workdir={tmp_path / 'identify'}", "--config.seed=7",
                          "--config.progress_bar=off"]
  assert trained[3:] == ["--config=configs/fixed_group.py:rotated_mirrored,D4,16",
                         f"--workdir={tmp_path / 'trained'}", "--config.seed=7",
                         "--config.progress_bar=off"]
  summary = json.loads((tmp_path / itt.SUMMARY).read_text())
  assert summary == {"data": "rotated_mirrored", "channels": 16, "seed": 7, "group": "D4",
                     "identified_at_step": 320, "identification_wall_s": 51.5,
                     "trained_steps": 750, "trained_wall_s": 600.0, "test_accuracy": 0.765}
  assert "identified D4 at step 320" in capsys.readouterr().out


def test_the_trivial_group_trains_the_plain_cnn(tmp_path):
  calls = []
  assert itt.main(["--data=upright", "--channels=32", f"--workdir={tmp_path}"],
                  run=_fake_runner("trivial", calls)) == 0
  assert calls[1][3] == "--config=configs/fixed_group.py:upright,cnn,32"


def test_no_group_named_or_a_failed_stage_stops_with_one_line(tmp_path, capsys):
  calls = []
  assert itt.main(["--data=mirrored", f"--workdir={tmp_path / 'a'}"],
                  run=_fake_runner(None, calls)) == 1
  assert len(calls) == 1                                   # stage 2 never started
  assert "ended without naming a subgroup" in capsys.readouterr().err
  calls = []
  assert itt.main(["--data=mirrored", f"--workdir={tmp_path / 'b'}"],
                  run=_fake_runner("flip", calls, fail_stage=itt.TRAINED)) == 3
  assert "stage 'trained' exited with status 3" in capsys.readouterr().err
  assert not (tmp_path / "b" / itt.SUMMARY).exists()


def test_bad_arguments_are_refused_in_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit):
    itt.main(["--data=sideways", f"--workdir={tmp_path}"], run=_fake_runner("D4", []))
  assert "'sideways,16' is not accepted" in capsys.readouterr().err
  with pytest.raises(ValueError, match="stage: 'both' is not accepted"):
    itt.stage_command("both", "mirrored", 16, 0, str(tmp_path))
  with pytest.raises(ValueError, match="group: None is not accepted"):
    itt.stage_command(itt.TRAINED, "mirrored", 16, 0, str(tmp_path))


def test_both_stages_are_valid_configs_and_stage_two_is_the_fixed_prior():
  """Stage 2's config is exactly configs/fixed_group.py's for the named group (the grid's fixed
  row), and stage 1's is the recipe's with the run ending at the commitment."""
  from configs import discover, fixed_group
  from ds_symmetry.train.config import validate_config
  first = discover.get_config("mirrored,16")
  first.discovery.stop_after, first.discovery.keep_backbone = True, False
  validate_config(first)
  second = fixed_group.get_config("mirrored,flip,16")
  validate_config(second)
  assert second.model == "gcnn" and second.num_epochs == first.num_epochs
  assert second.limit_train == first.limit_train and second.seed == first.seed
