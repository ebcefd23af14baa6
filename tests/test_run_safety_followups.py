"""Run safety, the remaining parts of issue 25: a diverged run's report says what to change,
protocol options from the command line, images that do not fit the model refused before
anything is written, a damaged ``discovered_stacks.npz`` recovered on resume, and the
multi-host lock.

Tiny and in-process where possible (helpers from ``test_run_safety``); a command-line test
checks each one-line error and its exit status.
"""

import json

from ds_symmetry import report, run_files
from test_run_safety import tiny_cnn


# --------------------------------------------------------------------------------------------
# 1. A diverged run's report says where it diverged and what to change, not "rerun".
# --------------------------------------------------------------------------------------------
def _diverged_results(workdir, config):
  run_files.write_config(workdir, config)
  run_files.write_results(workdir, {
      "status": "diverged", "model": config["model"], "protocol": config["protocol"],
      "step": 3, "diverged_at_step": 3, "divergence": "the loss is nan at step 3",
      "last_checkpoint_step": 2, "final_test_accuracy": None, "best_test_accuracy": None,
      "best_epoch": None, "parameters": {"free": 1000, "representation": 300},
      "learned_symmetry": {}, "config": config})


def test_the_report_of_a_diverged_run_says_where_and_what_to_change(tmp_path, capsys):
  """It said "stacks.npz is missing ... rerun the training command", which diverges again."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = run_files.config_as_dict(tiny_cnn(tmp_path, model="wscnn", learning_rate=1e3))
  _diverged_results(workdir, config)
  assert report.main([str(workdir)]) == 0  # diverged before its first evaluation: no stacks
  out = capsys.readouterr().out
  assert "no stacks: the run diverged before its first evaluation" in out
  assert ("DIVERGED at step 3: the loss is nan at step 3; training stopped there (last finite "
          "checkpoint: step 2)") in out
  assert "resumes from its checkpoint at step 2 and diverges again" in out
  assert "new workdir with a smaller config.learning_rate" in out
  assert "learning_rate 1000.0" in out and "rerun" not in out.lower()
  # With the stacks of an evaluation before the divergence: those, named as such.
  run_files.save_stacks(workdir, {"convs/0": [[[1.0]]]},
                        {"convs/0": {"kind": "lift", "kernel_size": 1, "learned": False,
                                     "num_elements": 1, "group": "C1"}}, 2)
  assert report.main([str(workdir)]) == 0
  out = capsys.readouterr().out
  assert "stacks at step 2, the last evaluation before the divergence" in out
  assert "DIVERGED at step 3" in out and "rerun" not in out.lower()
  assert json.loads((workdir / "results.json").read_text())["status"] == "diverged"
