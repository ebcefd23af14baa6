"""Run safety, the remaining parts of issue 25: a diverged run's report says what to change,
protocol options from the command line, images that do not fit the model refused before
anything is written, a damaged ``discovered_stacks.npz`` recovered on resume, and the
multi-host lock.

Tiny and in-process where possible (helpers from ``test_run_safety``); a command-line test
checks each one-line error and its exit status.
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from ds_symmetry import report, run_files
from ds_symmetry.train import checkpointing, train_and_evaluate
from ds_symmetry.train.checkpointing import Checkpointer, read_checkpoint
from test_run_safety import assert_one_line_error, cnn_overrides, tiny_cnn
from test_train import REPO, _config_file, _env


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


# --------------------------------------------------------------------------------------------
# 2. Any protocol option can be set from the command line, named in the config file or not.
# --------------------------------------------------------------------------------------------
def test_split_protocol_options_takes_them_out_of_absls_way():
  from ds_symmetry.main import split_protocol_options  # pylint: disable=import-outside-toplevel
  argv = ["main", "--config=c.py", "--config.protocol_options.flip_probability=0.5",
          "--config.num_epochs=1", "--config.protocol_options.rotation_group_order", "4",
          "--workdir=w"]
  assert split_protocol_options(argv) == (
      ["main", "--config=c.py", "--config.num_epochs=1", "--workdir=w"],
      [("flip_probability", "0.5"), ("rotation_group_order", "4")])


def test_protocol_options_are_set_whether_or_not_the_config_names_them(tmp_path):
  """`--config.protocol_options.flip_probability=0.5` on a config without the field was
  refused by absl ("does not exist")."""
  from ds_symmetry.train.config import set_protocol_options, validate_config
  config = tiny_cnn(tmp_path)  # locked; rotated_mnist; protocol_options is empty
  assert not config.protocol_options.keys()
  set_protocol_options(config, [("flip_probability", "0.5"), ("rotation_group_order", "4"),
                                ("test_seed", "None"), ("dataset", "fashion_mnist")])
  assert config.protocol_options.to_dict() == {
      "flip_probability": 0.5, "rotation_group_order": 4, "test_seed": None,
      "dataset": "fashion_mnist"}
  set_protocol_options(config, [("flip_probability", "1"), ("rotation_group_order", "none")])
  assert config.protocol_options.flip_probability == 1.0
  assert config.protocol_options.rotation_group_order is None
  validate_config(config)
  assert config.is_locked
  with pytest.raises(ValueError, match=r"^--config\.protocol_options\.flip_probabilty: "
                                       r"'flip_probabilty' is not an option of protocol "
                                       r"'rotated_mnist'; accepted: \['dataset', "
                                       r"'flip_probability', 'max_angle_deg'"):
    set_protocol_options(config, [("flip_probabilty", "0.5")])
  with pytest.raises(ValueError, match=r"flip_probability: 'half' is not accepted; expected a "
                                       r"float$"):
    set_protocol_options(config, [("flip_probability", "half")])
  with pytest.raises(ValueError, match=r"flip_probability: 'None' is not accepted"):
    set_protocol_options(config, [("flip_probability", "None")])


def test_an_option_the_protocol_does_not_take_is_refused_by_validate_config(tmp_path):
  from ds_symmetry.train.config import validate_config
  config = tiny_cnn(tmp_path, protocol="cifar10", model="resnet",
                    model_options={"channels": 4, "in_channels": 3})
  with config.unlocked():
    config.protocol_options.max_angle_deg = 90.0
  with pytest.raises(ValueError, match=r"config\.protocol_options: \['max_angle_deg'\] not "
                                       r"accepted by protocol 'cifar10'; accepted: \['dataset', "
                                       r"'test_noise_std', 'test_seed', 'validation_examples'\]"):
    validate_config(config)


def _main_with_a_fake_trainer(tmp_path, *flags):
  """``ds_symmetry.main`` as a user runs it, with a trainer that prints the options it got."""
  config_file = _config_file(tmp_path, tmp_path / "no_data_here", **cnn_overrides())
  launcher = textwrap.dedent(f"""
      import json, sys
      from absl import app
      from ds_symmetry import main, report
      def fake_train(config, workdir, adopt_workdir=False):
        print("options:", json.dumps(config.protocol_options.to_dict(), sort_keys=True))
      main.train_and_evaluate = fake_train
      report.format_report = lambda workdir: "report"
      sys.argv = ["main", "--config={config_file}", "--workdir={tmp_path / 'run'}",
                  *{list(flags)!r}]
      app.run(main.main, flags_parser=main.parse_flags)
      """)
  return subprocess.run([sys.executable, "-c", launcher], env=_env(), cwd=REPO,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # two interpreters (~7 s); the fast tests above check the same functions
def test_cli_sets_a_protocol_option_the_config_file_lacks(tmp_path):
  result = _main_with_a_fake_trainer(tmp_path, "--config.protocol_options.flip_probability=0.5",
                                     "--config.protocol_options.rotation_group_order=4")
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'options: {"flip_probability": 0.5, "rotation_group_order": 4}' in result.stdout
  refused = _main_with_a_fake_trainer(tmp_path, "--config.protocol_options.flip_prob=0.5")
  assert refused.returncode == 2
  assert_one_line_error(refused, "--config.protocol_options.flip_prob: 'flip_prob' is not an "
                                 "option of protocol 'rotated_mnist'; accepted: ['dataset', "
                                 "'flip_probability',")
  assert "options:" not in refused.stdout and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# 3. Images that do not fit the model are refused before anything is written.
# --------------------------------------------------------------------------------------------
def test_images_of_other_channels_are_refused_before_the_workdir_exists(tmp_path):
  """`configs/cifar10.py:resnet` on rotated_mnist failed at the first step, after the workdir
  (config.json, checkpoints/, metrics) was written."""
  from ds_symmetry.train.config import ImagesDoNotFitError
  config = tiny_cnn(tmp_path / "no_data_here", model="resnet",
                    model_options={"channels": 4, "in_channels": 3})
  with pytest.raises(ImagesDoNotFitError, match=r"config\.protocol 'rotated_mnist' gives 28×28 "
                                                r"images with 1 channel, but model 'resnet' "
                                                r"expects 3 input channels"):
    train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
  cifar = tiny_cnn(tmp_path, protocol="cifar10")  # the MNIST cnn on colour images
  with pytest.raises(ImagesDoNotFitError, match=r"'cifar10' gives 32×32 images with 3 channels, "
                                                r"but model 'cnn' expects 1 input channel "):
    train_and_evaluate(cifar, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_images_smaller_than_the_model_takes_are_refused_untouched(tmp_path):
  """Seven unpadded 5×5 blocks need 29×29 pixels: refused before the data is read or the
  workdir written (an empty directory stays empty)."""
  from ds_symmetry.train.config import ImagesDoNotFitError
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = tiny_cnn(tmp_path / "no_data_here", model_options={"channels": 4, "num_blocks": 7})
  with pytest.raises(ImagesDoNotFitError, match=r"gives 28×28 images with 1 channel, but model "
                                                r"'cnn' needs at least 29×29 pixels"):
    train_and_evaluate(config, str(workdir))
  assert os.listdir(workdir) == []


@pytest.mark.slow  # one interpreter (~4 s); the fast tests above check the same rule
def test_cli_images_that_do_not_fit_are_one_line_exit_2(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "ds_symmetry.main", "--config=configs/cifar10.py:resnet",
       "--config.protocol=rotated_mnist", f"--workdir={tmp_path / 'run'}"],
      env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  assert_one_line_error(result, "config.protocol 'rotated_mnist' gives 28×28 images with 1 "
                                "channel, but model 'resnet' expects 3 input channels")
  assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# 4. A damaged discovered_stacks.npz is set aside on resume and the discovery redone.
# --------------------------------------------------------------------------------------------
def _truncate(path):
  with open(path, "r+b") as file:
    file.truncate(os.path.getsize(path) // 2)


def test_a_damaged_discovered_stacks_file_says_how_it_is_recovered(tmp_path):
  """Its advice was "rerun the training command", which failed the same way."""
  stack = np.stack([np.eye(9, dtype=np.float32)] * 2)
  run_files.save_discovered(tmp_path, {"convs/0": stack}, {"step": 4, "group": "C2"})
  _truncate(tmp_path / run_files.DISCOVERED_STACKS)
  with pytest.raises(run_files.UnreadableRunFile,
                     match=r"discovered_stacks\.npz is unreadable \(BadZipFile: .*\); it is "
                           r"truncated or was replaced\. Resuming the run \(its training "
                           r"command\) sets it aside as discovered_stacks\.damaged\.npz and "
                           r"redoes the discovery from the newest checkpoint before it"):
    run_files.load_discovered(tmp_path)
  run_files.save_discovered(tmp_path, {"convs/0": stack}, {"group": "C2"})  # no step
  with pytest.raises(run_files.UnreadableRunFile, match="its record is not a discovery's"):
    run_files.load_discovered(tmp_path)
  data = (tmp_path / run_files.DISCOVERED_STACKS).read_bytes()
  assert run_files.set_aside_discovered(tmp_path).endswith(run_files.DAMAGED_DISCOVERED)
  assert (tmp_path / run_files.DAMAGED_DISCOVERED).read_bytes() == data
  assert run_files.load_discovered(tmp_path) is None


def _state(value, other_model=False):
  params = {"w": jnp.full((8, 8), value, jnp.float32)}
  if other_model:  # what a discovery does: learned parameters gone, a frozen stack added
    params = {"w": params["w"], "fixed_stack": jnp.zeros((2, 3, 3), jnp.float32)}
  return {"params": params, "step": jnp.asarray(1, jnp.int32)}


def test_a_restore_can_set_other_models_checkpoints_aside(tmp_path, caplog):
  directory = tmp_path / "checkpoints"
  checkpointer = Checkpointer(directory, keep=5)
  checkpointer.save(2, _state(2.0))
  for step in (4, 6):
    checkpointer.save(step, _state(float(step), other_model=True))
  checkpointer.close()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0.0))
  checkpointer = Checkpointer(directory, keep=5)
  with pytest.raises(checkpointing.IncompatibleCheckpointError, match="another model"):
    checkpointer.restore(abstract)  # by default another model's checkpoint is an error
  with caplog.at_level("WARNING"):
    step, state = checkpointer.restore(abstract, set_aside_other_models=True)
  checkpointer.close()
  assert step == 2 and float(state["params"]["w"][0, 0]) == 2.0
  assert checkpointer.set_aside_steps == [6, 4] and checkpointer.steps() == [2]
  assert sorted(os.listdir(tmp_path / checkpointing.REJECTED_DIR)) == ["4", "6"]
  assert not caplog.records  # quiet: the caller says why, in one line


@pytest.mark.slow  # two tiny discovery runs of a wscnn (~1 min)
def test_a_damaged_discovered_stacks_file_is_recovered_on_resume(tmp_path, mnist_dir, caplog):
  """Resume used to stop with "discovered_stacks.npz is unreadable ... rerun the training
  command" on every rerun. Now: the file and the discovered model's checkpoints are set aside,
  the run resumes before the discovery, redoes it and ends as an uninterrupted run."""
  overrides = dict(model="wscnn", model_options={"channels": 4}, num_epochs=2,
                   discovery={"at_step": 4, "require_group": False}, keep_checkpoints=10)
  workdir = tmp_path / "run"
  first = train_and_evaluate(tiny_cnn(mnist_dir, **overrides), str(workdir))
  assert first["discovery"]["step"] == 4
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6", "8"]
  size = os.path.getsize(workdir / run_files.DISCOVERED_STACKS)
  stacks, record = run_files.load_discovered(workdir)
  records = run_files.read_metrics(workdir)
  _truncate(workdir / run_files.DISCOVERED_STACKS)
  with caplog.at_level("WARNING"):
    summary = train_and_evaluate(tiny_cnn(mnist_dir, **overrides), str(workdir))
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
              and "discovered" in r.getMessage()]
  assert len(warnings) == 1, warnings
  assert re.search(r"discovered_stacks\.npz \(unreadable: BadZipFile: .*\): set aside as "
                   r"discovered_stacks\.damaged\.npz with the checkpoints of the discovered "
                   r"model \(steps 4, 6, 8, now in rejected_checkpoints/\); resuming from the "
                   r"checkpoint at step 2, before the discovery, which is redone", warnings[0])
  assert summary["resumed_from_step"] == 2 and summary["discovery"]["step"] == 4
  assert summary["status"] == "finished" and summary["step"] == 8
  redone_stacks, redone = run_files.load_discovered(workdir)  # redone: the same answer
  jax.tree.map(np.testing.assert_array_equal, redone_stacks, stacks)
  assert strip([redone]) == strip([record])
  assert os.path.getsize(workdir / run_files.DAMAGED_DISCOVERED) == size // 2
  assert sorted(os.listdir(workdir / checkpointing.REJECTED_DIR)) == ["4", "6", "8"]
  _, expected = read_checkpoint(workdir / checkpointing.REJECTED_DIR, 8)
  _, found = read_checkpoint(workdir / "checkpoints", 8)
  jax.tree.map(np.testing.assert_array_equal, found, expected)
  assert strip(run_files.read_metrics(workdir)) == strip(records)


def strip(records):
  return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]


# --------------------------------------------------------------------------------------------
# 5. Multi-host: the other processes start only under their first process's lock.
# --------------------------------------------------------------------------------------------
COORDINATOR = "10.0.0.1:1234"


def test_a_multi_host_runs_other_processes_wait_for_its_first_processs_lock(tmp_path):
  from ds_symmetry import workdir_lock  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "run"
  lock_path = workdir / run_files.LOCK

  def peer(coordinator=COORDINATOR):
    return workdir_lock.claim_workdir(workdir, lock=False, coordinator=coordinator,
                                      peer_wait_s=0.3)

  with pytest.raises(workdir_lock.PeerLockMissing,
                     match=r"process 0 of the run coordinated at 10\.0\.0\.1:1234 did not lock "
                           r"the workdir within 0\.3 s \(there is no lock\); this process "
                           r"does not start"):
    peer()
  assert not workdir.exists()  # nothing judged, made or written
  first = workdir_lock.claim_workdir(workdir, coordinator=COORDINATOR)  # process 0
  try:
    holder = workdir_lock.read_holder(lock_path)
    assert holder["coordinator"] == COORDINATOR and holder["process_id"] == 0
    assert peer().kind == "peer"  # at once: the lock of its own first process
    with pytest.raises(workdir_lock.PeerLockMissing,
                       match=r"held by \S+ \(since [^)]+\) for the run coordinated at "
                             r"10\.0\.0\.1:1234"):
      peer("10.0.0.2:1234")  # another run's process
  finally:
    first.release()  # and removes the (empty) directory it made
  workdir.mkdir()
  with workdir_lock.WorkdirLock(lock_path):  # a single-host trainer's lock
    with pytest.raises(workdir_lock.PeerLockMissing, match="not by a multi-host run's first"):
      peer()
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  lock_path.write_text(json.dumps(dict(workdir_lock.peer_record(COORDINATOR),
                                       host=socket.gethostname(), pid=int(dead.stdout))))
  with pytest.raises(workdir_lock.PeerLockMissing, match="which no longer runs"):
    peer()  # a lock its first process left when it died is not a live run's


def test_a_trainers_second_process_refuses_without_its_first_processs_lock(tmp_path,
                                                                         monkeypatch):
  """It used to judge the directory alone and start: nothing said its process 0 held the
  workdir (or was even running)."""
  from ds_symmetry import workdir_lock  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(workdir_lock, "PEER_WAIT_S", 0.3)
  config = tiny_cnn(tmp_path / "no_data_here")
  with config.unlocked():
    config.distributed.coordinator_address = COORDINATOR
    config.distributed.num_processes = 2
    config.distributed.process_id = 1
  with pytest.raises(workdir_lock.PeerLockMissing, match="there is no lock"):
    train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
