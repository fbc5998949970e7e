"""Preemption and checkpoint integrity (issue 8, items 1 and 2).

* SIGTERM or SIGINT during training: the step finishes, its checkpoint is committed, ``run``
  returns (the CLI exits 0), and the resumed run equals an unbroken one bit for bit on CPU.
* A damaged newest checkpoint is found and the run resumes from the newest good one with a
  warning; a crash mid-save keeps the previous checkpoint; a changed model config is named.
"""
import glob
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.experimental.compilation_cache import compilation_cache

from spiral_jax import checkpoint as checkpoint_lib
from spiral_jax import config as config_lib
from spiral_jax import metrics as metrics_lib
from spiral_jax.rl import sft as sft_lib
from spiral_jax.run.signals import StopSignals
from spiral_jax.run.trainer import Trainer
from tests import robustness_config

# Reading a damaged checkpoint leaves TensorStore futures whose errors Orbax never collects.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 2  # policy steps of the in-process runs (the config's num_steps)


def _config(**overrides):
  """The robustness run's config with ``overrides``; ``__`` is a group's dot (``checkpoint__every``)."""
  c = robustness_config.get_config()
  c.update_from_flattened_dict({k.replace("__", "."): v for k, v in overrides.items()})
  return config_lib.from_config_dict(c)


def _run(workdir, **overrides):
  return Trainer(_config(**overrides), str(workdir), progress=False).run()


def _rows(workdir):
  return [{k: v for k, v in r.items() if not k.startswith("time/")}
          for r in metrics_lib.read(workdir)]


def _steps(workdir):
  return sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit())


def _assert_same_run(workdir, state, ref_workdir, ref):
  """Parameters, optimizer state, RAE baselines and metrics rows equal, bit for bit."""
  assert int(state.step) == int(ref.step)
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.abs(np.asarray(ref.rae)).sum() > 0  # the baselines moved: the test means something
  assert _rows(workdir) == _rows(ref_workdir)


@pytest.fixture(scope="module", autouse=True)
def compile_once(tmp_path_factory):
  """Every Trainer here compiles the same programs: a persistent cache (for this module only)
  compiles them once, which makes each later Trainer ~5x faster."""
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  before = {name: getattr(jax.config, name) for name in names}
  for name, value in zip(names, (str(tmp_path_factory.mktemp("jax_cache")), 0.0, 0)):
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield
  for name, value in before.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """An unbroken N-step run that checkpoints every step and keeps them all."""
  workdir = tmp_path_factory.mktemp("straight")
  return workdir, _run(workdir)


# ---- preemption ----
def test_stop_signals_flag_the_first_abort_on_the_second_and_restore_handlers():
  before = {s: signal.getsignal(s) for s in StopSignals.SIGNALS}
  with StopSignals() as stop:
    os.kill(os.getpid(), signal.SIGTERM)  # would end this pytest process without the handler
    assert stop.received == signal.SIGTERM and stop.name == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):  # a second signal gets the previous handler's action
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(1)
  assert {s: signal.getsignal(s) for s in StopSignals.SIGNALS} == before


def test_sigterm_mid_step_saves_that_step_and_the_resumed_run_is_exact(tmp_path, straight):
  before = signal.getsignal(signal.SIGTERM)
  trainer = Trainer(_config(checkpoint__every=100), str(tmp_path), progress=False)
  collect = trainer.collect

  def collect_then_preempt(state, runners=None):
    if int(state.step) == 0:  # the notice arrives while policy step 1 collects its games
      os.kill(os.getpid(), signal.SIGTERM)
    return collect(state, runners)

  trainer.collect = collect_then_preempt
  stopped = trainer.run()
  assert int(stopped.step) == 1 < N
  assert signal.getsignal(signal.SIGTERM) == before  # the handler lived only while run ran
  assert _steps(tmp_path) == [0, 1]  # step 1 saved for the signal (checkpoint_every=100)
  assert not glob.glob(str(tmp_path / "checkpoints" / "*tmp*"))  # committed before run returned
  assert [r["step"] for r in metrics_lib.read(tmp_path)] == [1]
  assert (tmp_path / "learning_curves.png").stat().st_size  # drawn on a stop signal too
  resumed = _run(tmp_path, checkpoint__every=100)
  _assert_same_run(tmp_path, resumed, *straight)


def test_sigterm_during_the_warm_start_stops_within_a_step_and_the_rerun_is_exact(
    tmp_path, monkeypatch):
  """A preemption notice while warm-start step 2 of 4 builds its batch: that step finishes, the
  warm-start's state is saved, nothing else is; the rerun resumes it at step 2 and ends exactly
  as an unbroken run (warm-start, then the policy steps)."""
  warm = {"warm_start__steps": 4, "checkpoint__every": 100}
  ref = _run(tmp_path / "ref", **warm)
  batches = []
  build = sft_lib.sft_batch

  def batch_then_preempt(*args, **kwargs):
    batches.append(1)
    if len(batches) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return build(*args, **kwargs)

  monkeypatch.setattr(sft_lib, "sft_batch", batch_then_preempt)
  workdir = tmp_path / "run"
  stopped = _run(workdir, **warm)
  monkeypatch.undo()
  assert int(stopped.step) == 0 and len(batches) == 2  # stopped after the step under way
  assert sorted(os.listdir(workdir / "warm_start")) == ["2", sft_lib.FLOORS]
  assert not os.path.exists(workdir / "metrics.jsonl") and not _steps(workdir)
  resumed = _run(workdir, **warm)
  _assert_same_run(workdir, resumed, tmp_path / "ref", ref)
  assert not os.path.exists(workdir / "warm_start")  # served: step 0 holds its result


@pytest.mark.slow
def test_cli_killed_at_a_random_point_exits_0_and_resumes_exactly(tmp_path):
  """The real thing: SIGTERM to ``python -m spiral_jax.train``, then the same command again."""
  steps = 6
  ref_workdir = tmp_path / "straight"
  ref = _run(ref_workdir, num_steps=steps)
  workdir = tmp_path / "cli"
  cmd = [sys.executable, "-m", "spiral_jax.train", f"--config={robustness_config.__file__}",
         f"--workdir={workdir}", "--progress=false", f"--config.num_steps={steps}"]
  proc = subprocess.Popen(cmd + ["--config.checkpoint.every=100"], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  rows_before, delay = random.randint(1, 2), random.uniform(0, 0.2)  # a random-ish point
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 300
  while not (metrics.exists() and len(metrics.read_text().splitlines()) >= rows_before):
    assert proc.poll() is None, proc.stdout.read()
    assert time.time() < deadline, "no metrics rows within 300 s"
    time.sleep(0.05)
  time.sleep(delay)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  stopped = metrics_lib.read(workdir)[-1]["step"]
  assert rows_before <= stopped < steps and "stopped by SIGTERM" in out, (rows_before, delay, out)
  assert stopped in _steps(workdir)
  done = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=300, check=False)
  assert done.returncode == 0, done.stdout + done.stderr
  state = checkpoint_lib.Checkpointer(str(workdir / "checkpoints")).restore(steps, ref)
  _assert_same_run(workdir, state, ref_workdir, ref)


# ---- integrity: detection and fallback, on a small state ----
def _state(value: float):
  # 64K floats: big enough that Orbax writes the data to its own file rather than inline
  return {"w": jnp.arange(65536, dtype=jnp.float32) * value,
          "b": jnp.full((3,), value, jnp.bfloat16), "step": jnp.int32(value),
          "mask": jnp.arange(5) % 2 == 0}


def _largest_file(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, "**"), recursive=True) if os.path.isfile(f)]
  return max(files, key=os.path.getsize)


def _flip_a_byte(step_dir):
  with open(_largest_file(step_dir), "r+b") as f:
    f.seek(os.fstat(f.fileno()).st_size // 2)
    byte = f.read(1)[0]
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte ^ 0x10]))


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _swap_in_step_1(step_dir):
  shutil.rmtree(os.path.join(step_dir, "default"))
  shutil.copytree(os.path.join(os.path.dirname(step_dir), "1", "default"),
                  os.path.join(step_dir, "default"))


UNREADABLE, ALTERED = "be read", "does not match the fingerprint"
CORRUPTIONS = {  # name: (damage to a step folder, what the warning says)
    # Orbax reads these two back without an error: only the fingerprints catch them.
    "a flipped byte in the data": (_flip_a_byte, ALTERED),
    "another step's arrays": (_swap_in_step_1, ALTERED),
    "a truncated data file": (lambda d: _truncate(_largest_file(d)), UNREADABLE),
    "a deleted data file": (lambda d: os.remove(_largest_file(d)), UNREADABLE),
    "truncated array metadata": (lambda d: _truncate(os.path.join(d, "default", "_METADATA")),
                                 UNREADABLE),
    "an emptied step folder": (lambda d: [shutil.rmtree(d), os.makedirs(d)], UNREADABLE),
}


@pytest.mark.parametrize("damage", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_good_one(tmp_path, damage, caplog):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=3)
  for step in (1, 2):
    ckpt.save(step, _state(float(step)))
  ckpt.close()
  corrupt, says = CORRUPTIONS[damage]
  corrupt(str(tmp_path / "2"))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=3)
  if says == ALTERED:  # Orbax alone would resume from it
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state(0.0))
    ckpt.manager.restore(2, args=ocp.args.StandardRestore(abstract))
  with caplog.at_level(logging.WARNING):
    restored = ckpt.restore_latest(_state(0.0))
  np.testing.assert_array_equal(restored["w"], _state(1.0)["w"])
  assert "checkpoint 2 under" in caplog.text and says in caplog.text
  assert "Resuming from step 1 instead" in caplog.text
  assert os.path.isdir(tmp_path / "corrupt" / "2") and ckpt.manager.all_steps() == [1]
  ckpt.save(2, _state(2.0))  # the resumed run writes step 2 again
  ckpt.wait()
  np.testing.assert_array_equal(ckpt.restore(2, _state(0.0))["w"], _state(2.0)["w"])
  ckpt.close()


def _train_state(value: float):
  return {"params": _state(value), "opt": jnp.full((3,), value)}


def test_a_params_only_restore_is_verified_and_falls_back_without_moving_anything(tmp_path,
                                                                                   caplog):
  """Opponents, the league and evaluation read just the params, through the same checks."""
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=3)
  for step in (1, 2):
    ckpt.save(step, _train_state(float(step)))
  ckpt.close()
  _flip_a_byte(str(tmp_path / "2"))  # the largest file: the params' w
  reader = checkpoint_lib.Checkpointer(str(tmp_path), read_only=True)
  with pytest.raises(checkpoint_lib.CorruptCheckpointError, match="checkpoint 2 under .*: params/w does"):
    reader.restore_params(2, _state(0.0))  # a named step: no fallback
  with caplog.at_level(logging.WARNING):
    params, step = reader.restore_params(None, _state(0.0))
  assert step == 1 and "Using step 1 instead" in caplog.text
  np.testing.assert_array_equal(params["w"], _state(1.0)["w"])
  assert reader.steps() == [1, 2] and not os.path.exists(tmp_path / "corrupt")  # read-only
  wider = dict(_state(0.0), w=jnp.zeros(65537, jnp.float32))
  with pytest.raises(checkpoint_lib.CheckpointMismatchError, match=r"params/w has shape \(65536,\)"):
    reader.restore_params(1, wider)
  with pytest.raises(checkpoint_lib.CheckpointMismatchError, match=r"saved steps are \[1, 2\]"):
    reader.restore_params(7, _state(0.0))
  reader.close()


def test_altered_arrays_fail_their_fingerprint(tmp_path, monkeypatch):
  """Files that read back fine but hold other values than were saved are refused."""
  real = checkpoint_lib.fingerprints
  monkeypatch.setattr(checkpoint_lib, "fingerprints",
                      lambda tree: {k: v ^ (k == "w") for k, v in real(tree).items()})
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1.0))
  ckpt.wait()
  monkeypatch.setattr(checkpoint_lib, "fingerprints", real)
  with pytest.raises(checkpoint_lib.CorruptCheckpointError,
                     match="w does not match the fingerprint"):
    ckpt.restore(1, _state(0.0))
  with pytest.raises(checkpoint_lib.CorruptCheckpointError, match="no checkpoint .* restores"):
    ckpt.restore_latest(_state(0.0))  # nothing older to fall back to: an error, nothing moved
  assert ckpt.manager.all_steps() == [1]
  ckpt.close()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int32", "uint32", "bool"])
def test_fingerprints_see_every_flipped_bit_and_ignore_sharding(dtype):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 2**16, (8, 6)).astype(np.float32)).astype(dtype)
  base = checkpoint_lib.fingerprints({"x": x})["x"]
  bits = np.asarray(x).view(np.uint8).copy() if dtype != "bool" else np.asarray(x).astype(np.uint8)
  for flat in rng.integers(0, bits.size, 20):
    for bit in (0, 7) if dtype != "bool" else (0,):
      flipped = bits.copy().reshape(-1)
      flipped[flat] ^= 1 << bit
      y = flipped.view(np.asarray(x).dtype).reshape(x.shape) if dtype != "bool" else flipped.astype(
          bool).reshape(x.shape)
      assert checkpoint_lib.fingerprints({"x": jnp.asarray(y)})["x"] != base
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
  assert checkpoint_lib.fingerprints({"x": sharded})["x"] == base


def test_a_tmp_folder_left_by_a_crash_is_ignored_and_removed(tmp_path, caplog):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1.0))
  ckpt.close()
  shutil.copytree(tmp_path / "1", tmp_path / "2.orbax-checkpoint-tmp-1234")  # never renamed
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  with caplog.at_level(logging.WARNING):
    restored = ckpt.restore_latest(_state(0.0))
  assert int(restored["step"]) == 1 and "Resuming" not in caplog.text
  ckpt.save(2, _state(2.0))  # waits for Orbax's clean-up of tmp folders first
  ckpt.close()
  assert sorted(os.listdir(tmp_path)) == ["1", "2"]


CRASH_MID_SAVE = textwrap.dedent("""
    import os, sys
    import jax.numpy as jnp
    from spiral_jax import checkpoint
    ckpt = checkpoint.Checkpointer(sys.argv[1], keep=1)
    ckpt.save(1, {"w": jnp.full((1 << 23,), 1.0)})
    ckpt.wait()
    ckpt.save(2, {"w": jnp.arange(1 << 23, dtype=jnp.float32)})  # 32 MB, written in the background
    os._exit(0)  # the crash: while step 2's files are being written
""")


def test_a_crash_mid_save_keeps_the_previous_checkpoint(tmp_path):
  """keep=1: step 1 may go only once step 2 is complete, and step 2 never completes here."""
  subprocess.run([sys.executable, "-c", CRASH_MID_SAVE, str(tmp_path)], cwd=ROOT, check=True,
                 timeout=120)
  left = sorted(os.listdir(tmp_path))
  assert "1" in left and "2" not in left, left  # step 1 survived; step 2 never committed
  assert any(name.startswith("2.orbax-checkpoint-tmp") for name in left), left  # died mid-save
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=1)
  restored = ckpt.restore_latest({"w": jnp.zeros((1 << 23,))})
  assert ckpt.latest_step() == 1 and float(restored["w"].min()) == 1.0
  ckpt.close()


# ---- integrity: the trainer ----
def test_the_trainer_resumes_from_the_newest_good_checkpoint(tmp_path, straight, caplog):
  ref_workdir, ref = straight
  workdir = tmp_path / "run"
  shutil.copytree(ref_workdir, workdir)
  for path in glob.glob(str(workdir / "checkpoints" / str(N) / "**" / "d" / "*"), recursive=True):
    _truncate(path)  # a half-written step
  with caplog.at_level(logging.WARNING):
    resumed = _run(workdir)
  assert f"checkpoint {N} under" in caplog.text and f"Resuming from step {N - 1}" in caplog.text
  assert os.path.isdir(workdir / "checkpoints" / "corrupt" / str(N))
  _assert_same_run(workdir, resumed, ref_workdir, ref)  # step N redone, its metrics row rewritten


def test_a_changed_model_config_names_the_array_and_the_field(tmp_path, straight):
  workdir = tmp_path / "run"
  shutil.copytree(straight[0], workdir)
  wider = dict(robustness_config.get_config().model_overrides, d_model=48)
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"params/embed_tokens has shape \(\d+, 32\) but the config gives "
                           r"\(\d+, 48\) \(model_overrides\.d_model\?\)"):
    _run(workdir, model_overrides=wider)
  assert not os.path.exists(workdir / "checkpoints" / "corrupt")  # not mistaken for damage
  assert _steps(workdir) == _steps(straight[0])
