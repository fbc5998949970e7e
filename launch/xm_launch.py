r"""xmanager launcher: one job per point of a sweep (experiments/sweeps.py), each in its own workdir.

  python launch/xm_launch.py --config=experiments/tiny_cpu.py --sweep=rae_ablation --dry_run
  python launch/xm_launch.py --config=experiments/paper_kuhn_qwen3_4b.py --sweep=rae_ablation \
      --executor=tpu --topology=v5e-16 --gcp_project=my-project --zone=us-west4-a \
      --repo=https://github.com/ORG/spiral_jax --workdir_root=gs://my-bucket/spiral \
      -- --config.num_steps=200

Executors (``--executor``):
  local   ``python -m spiral_jax.train`` on this machine (``xm.binary``), with this interpreter or
          ``--python`` (e.g. the project's .venv when xmanager lives in another environment).
  vertex  a Vertex AI custom job on GPUs (``--topology=a100x8``, ``l4x1``, ``t4x1``, ``v100x8``) in a
          container built from the package's sources (``xm.python_container``, jax[cuda12]).
  tpu     ``launch/tpu_vm.sh`` on this machine, one TPU VM slice per job (``--topology=v5e-16``,
          ``v4-8``, ``v5p-16``, ``v6e-8``): create, install, train in the foreground, delete.
          xmanager's own Vertex AI backend maps only TPU v2/v3, so slices go through gcloud.

Job ``i`` trains with ``--config`` plus the flags after ``--`` plus point ``i``'s overrides, in
``<workdir_root>/<experiment name>/<i>_<short name>``. Every point is first parsed against the
config file (``sweeps.check``), so a misspelt field fails here, not on a rented machine.

``--dry_run`` prints each job's command line and never imports xmanager. xmanager lives in the
``launch`` extra (``pip install -e '.[launch]'``) because it pins protobuf below 7, which the core
install does not need.
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
import shlex
import shutil
import sys
import tempfile
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `experiments` importable
  sys.path.insert(0, str(REPO))

from absl import app, flags  # noqa: E402
from experiments import sweeps  # noqa: E402

EXECUTORS = ("local", "vertex", "tpu")
PROVISIONING = ("on-demand", "spot", "queued", "queued-spot")  # as launch/tpu_vm.sh takes them
# TPU sizes count TensorCores on v4/v5p (multiples of 8) and chips on v5e/v6e.
TPU_CHIP_SIZES = (1, 4, 8, 16, 32, 64, 128, 256)
TPU_GENERATIONS = ("v4", "v5e", "v5litepod", "v5p", "v6e")
# GPUs whose Vertex AI machine type xmanager's backend chooses correctly, with the counts it maps.
VERTEX_GPUS = {"a100": (1, 2, 4, 8, 16), "l4": (1, 2, 4, 8), "t4": (1, 2, 4),
               "v100": (1, 2, 4, 8)}
XM_GPU_RESOURCE = {"a100": "a100", "l4": "l4_24th", "t4": "t4", "v100": "v100"}
VERTEX_BASE_IMAGE = "python:3.11"
# What the container needs of the checkout (not .venv, runs/ or caches).
SOURCES = ("spiral_jax", "experiments", "setup.cfg", "pyproject.toml", "constraints.txt",
           "README.md")


@dataclasses.dataclass(frozen=True)
class TpuOptions:
  """What ``launch/tpu_vm.sh`` needs besides the slice: where, how paid for, which code."""
  project: str = ""
  zone: str = ""
  provisioning: str = "on-demand"
  repo: str = ""
  ref: str = "main"


@dataclasses.dataclass(frozen=True)
class Job:
  """One sweep point: its run name, workdir and the arguments xmanager passes to the program."""
  index: int
  name: str               # "0_rae-True"
  workdir: str
  args: tuple[str, ...]   # the xm.Job args: train flags, or tpu_vm.sh's options and actions
  command: tuple[str, ...]  # the whole command line, for --dry_run


@dataclasses.dataclass(frozen=True)
class Plan:
  experiment: str
  executor: str
  topology: str | None
  config: str             # relative to the repository root
  jobs: tuple[Job, ...]
  python: str = sys.executable  # local: the interpreter the jobs run with


def parse_topology(executor: str, topology: str | None) -> tuple[str, int] | None:
  """``v5e-16`` -> ("v5e", 16) for tpu, ``a100x8`` -> ("a100", 8) for vertex, None for local."""
  if executor not in EXECUTORS:
    raise ValueError(f"--executor={executor!r}: choose one of {EXECUTORS}")
  if executor == "local":
    if topology:
      raise ValueError(f"--topology={topology} is for --executor=vertex or tpu; local jobs use "
                       "this machine's devices")
    return None
  if not topology:
    example = "v5e-16" if executor == "tpu" else "a100x8"
    raise ValueError(f"--topology is required for --executor={executor}, e.g. {example}")
  if executor == "tpu":
    match = re.fullmatch(r"(v[0-9a-z]+)-([1-9][0-9]*)", topology)
    if not match or match[1] not in TPU_GENERATIONS:
      raise ValueError(f"--topology={topology}: write a TPU slice as GENERATION-SIZE with "
                       f"GENERATION in {TPU_GENERATIONS}, e.g. v5e-16")
    generation, size = match[1], int(match[2])
    if generation in ("v4", "v5p") and size % 8:
      raise ValueError(f"--topology={topology}: {generation} sizes count TensorCores, a "
                       "multiple of 8")
    if generation not in ("v4", "v5p") and size not in TPU_CHIP_SIZES:
      raise ValueError(f"--topology={topology}: {generation} sizes are {TPU_CHIP_SIZES}")
    return generation, size
  match = re.fullmatch(r"([a-z0-9]+)x([1-9][0-9]*)", topology)
  if not match and re.match(r"v[0-9]", topology):
    raise ValueError(f"--topology={topology}: xmanager's Vertex AI backend maps only TPU v2/v3; "
                     "run TPU slices with --executor=tpu")
  if not match or match[1] not in VERTEX_GPUS:
    raise ValueError(f"--topology={topology}: write GPUxCOUNT with GPU in {sorted(VERTEX_GPUS)} "
                     "(the GPUs whose machine type xmanager's Vertex backend chooses), e.g. "
                     "a100x8")
  gpu, count = match[1], int(match[2])
  if count not in VERTEX_GPUS[gpu]:
    raise ValueError(f"--topology={topology}: Vertex AI offers {gpu} in counts {VERTEX_GPUS[gpu]}")
  return gpu, count


def _repo_relative(path: str) -> str:
  full = pathlib.Path(path).resolve()
  if not full.is_file():
    raise ValueError(f"--config={path} does not exist; pass a file such as "
                     "experiments/tiny_cpu.py")
  try:
    return full.relative_to(REPO).as_posix()
  except ValueError:
    raise ValueError(f"--config={path} must lie inside the repository ({REPO}): the jobs run "
                     "from a copy of it") from None


def _vm_name(experiment: str, index: int) -> str:
  """A TPU VM name: lower-case letters, digits and '-', starting with a letter."""
  base = re.sub(r"[^a-z0-9]+", "-", experiment.lower()).strip("-")[:50] or "spiral"
  return f"{base if base[0].isalpha() else 'x' + base}-{index}"


def make_plan(config: str, sweep: str | None = None, executor: str = "local",
              topology: str | None = None, workdir_root: str = "runs",
              experiment: str | None = None, extra_args: tuple[str, ...] = (),
              tpu: TpuOptions = TpuOptions(), python: str | None = None,
              check: bool = True) -> Plan:
  """Every job of the experiment, validated, without xmanager."""
  hardware = parse_topology(executor, topology)
  config = _repo_relative(config)
  if executor == "local" and pathlib.Path.cwd().resolve() != REPO:
    # Local jobs inherit this directory, and configs import `experiments.*` from it.
    raise ValueError(f"--executor=local: run the launcher from the repository root ({REPO})")
  python = python or sys.executable
  if executor == "local" and not shutil.which(python):
    raise ValueError(f"--python={python} is not an executable interpreter")
  points = sweeps.get(sweep) if sweep else [{}]
  for arg in extra_args:
    if not arg.startswith("--"):
      raise ValueError(f"the training flags after -- must be flags such as "
                       f"--config.num_steps=200, got {arg!r}")
  if check:
    sweeps.check(str(REPO / config), points, extra_args=extra_args)
  if executor != "local" and not workdir_root.startswith("gs://"):
    raise ValueError(f"--workdir_root={workdir_root}: {executor} jobs need a gs:// path, since "
                     "their machines are deleted after the run")
  if executor == "tpu":
    for flag, value in (("gcp_project", tpu.project), ("zone", tpu.zone), ("repo", tpu.repo)):
      if not value:
        raise ValueError(f"--{flag} is required for --executor=tpu")
    if tpu.provisioning not in PROVISIONING:
      raise ValueError(f"--provisioning={tpu.provisioning}: choose one of {PROVISIONING}")
  experiment = experiment or "-".join(
      ["spiral", pathlib.Path(config).stem] + ([sweep] if sweep else []))
  if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", experiment):
    raise ValueError(f"--experiment_name={experiment!r}: use letters, digits, '_', '.' and '-'")
  jobs = []
  for i, point in enumerate(points):
    name = sweeps.run_name(i, point)
    workdir = f"{workdir_root.rstrip('/')}/{experiment}/{name}"
    train_flags = (*extra_args, *sweeps.to_cli_args(point))
    if executor == "tpu":
      generation, size = hardware
      args = (f"--name={_vm_name(experiment, i)}", f"--project={tpu.project}",
              f"--zone={tpu.zone}", f"--accelerator={generation}-{size}",
              f"--provisioning={tpu.provisioning}", f"--repo={tpu.repo}", f"--ref={tpu.ref}",
              f"--config={config}", f"--workdir={workdir}",
              "create", "install", "run", "delete", "--", *train_flags)
      command = ("bash", "launch/tpu_vm.sh", *args)
    else:
      args = (f"--config={config}", f"--workdir={workdir}", *train_flags)
      interpreter = python if executor == "local" else "python"  # vertex: the container's
      command = (interpreter, "-m", "spiral_jax.train", *args)
    jobs.append(Job(i, name, workdir, args, command))
  return Plan(experiment, executor, topology, config, tuple(jobs), python)


def format_plan(plan: Plan) -> str:
  """The dry run: a header, then each job's name and exact command line, one job a line."""
  where = f", topology={plan.topology}" if plan.topology else ""
  lines = [f"# experiment {plan.experiment}: {len(plan.jobs)} job(s), executor={plan.executor}"
           f"{where}"]
  lines += [f"{job.name}: {shlex.join(job.command)}" for job in plan.jobs]
  return "\n".join(lines)


def _import_xmanager():
  try:
    from xmanager import xm, xm_local
  except ImportError as e:
    raise RuntimeError("xmanager is not installed: pip install -e '.[launch]' (it pins protobuf "
                       "below 7; in a separate virtual environment, give local jobs "
                       "--python=.venv/bin/python), or pass --dry_run to print the jobs") from e
  return xm, xm_local


def _stage_sources(destination: pathlib.Path) -> pathlib.Path:
  """Copies only what the container needs: xmanager would copy the whole folder, .venv included."""
  project = destination / "spiral_jax"
  project.mkdir()
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  for name in SOURCES:
    source = REPO / name
    if source.is_dir():
      shutil.copytree(source, project / name, ignore=ignore)
    else:
      shutil.copy2(source, project / name)
  return project


def xm_jobs(plan: Plan, xm: Any, xm_local: Any, executable: Any) -> list[Any]:
  """The ``xm.Job`` of every point, for an ``executable`` packaged by ``packageable``."""
  if plan.executor == "vertex":
    gpu, count = parse_topology(plan.executor, plan.topology)
    requirements = xm.JobRequirements(**{XM_GPU_RESOURCE[gpu]: count})
    executor = xm_local.Vertex(requirements=requirements)
  else:
    executor = xm_local.Local()
  # Lists, not dicts: xmanager turns a dict's booleans into --flag/--noflag, which
  # ml_collections' --config.x=False overrides do not accept.
  return [xm.Job(executable=executable, executor=executor, args=list(job.args), name=job.name)
          for job in plan.jobs]


def packageable(plan: Plan, xm: Any, xm_local: Any, staged: pathlib.Path | None = None) -> Any:
  """What xmanager packages once for every job of the plan."""
  if plan.executor == "local":
    return xm.binary(executor_spec=xm_local.Local.Spec(), path=shutil.which(plan.python),
                     args=["-m", "spiral_jax.train"])
  if plan.executor == "tpu":
    return xm.binary(executor_spec=xm_local.Local.Spec(), path=shutil.which("bash") or "/bin/bash",
                     args=[str(REPO / "launch" / "tpu_vm.sh")])
  if staged is None:
    raise ValueError("vertex jobs need the staged sources (see _stage_sources)")
  return xm.python_container(
      executor_spec=xm_local.Vertex.Spec(), path=str(staged), base_image=VERTEX_BASE_IMAGE,
      entrypoint=xm.ModuleName("spiral_jax.train"), use_deep_module=True,
      docker_instructions=[
          "ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1",
          f"COPY --chown=1000:root {staged.name}/ /spiral_jax",
          "WORKDIR /spiral_jax",
          "RUN python -m pip install --no-cache-dir -c constraints.txt -e . 'jax[cuda12]'",
      ])


def launch(plan: Plan) -> None:
  """Creates the xmanager experiment and adds one job per point."""
  xm, xm_local = _import_xmanager()
  with tempfile.TemporaryDirectory() as tmp:
    staged = _stage_sources(pathlib.Path(tmp)) if plan.executor == "vertex" else None
    with xm_local.create_experiment(experiment_title=plan.experiment) as experiment:
      [executable] = experiment.package([packageable(plan, xm, xm_local, staged)])
      for job in xm_jobs(plan, xm, xm_local, executable):
        experiment.add(job)


def define_flags() -> None:
  """The command line (defined only when run as a script, so importing this module defines none)."""
  flags.DEFINE_string("config", None, "config file inside the repository, e.g. "
                      "experiments/tiny_cpu.py", required=True)
  flags.DEFINE_string("sweep", None, f"a sweep of experiments/sweeps.py: {sorted(sweeps.SWEEPS)}")
  flags.DEFINE_enum("executor", "local", EXECUTORS, "where the jobs run")
  flags.DEFINE_string("topology", None, "tpu: a slice such as v5e-16; vertex: GPUxCOUNT such "
                      "as a100x8")
  flags.DEFINE_alias("accelerator", "topology")
  flags.DEFINE_string("workdir_root", "runs", "jobs write to <root>/<experiment>/<i>_<name>; "
                      "a gs:// path for vertex and tpu")
  flags.DEFINE_string("experiment_name", None, "default: spiral-<config name>[-<sweep>]")
  flags.DEFINE_bool("dry_run", False, "print each job's command line instead of launching")
  flags.DEFINE_string("python", None, "local: the interpreter of the jobs, e.g. .venv/bin/python "
                      "when xmanager lives in another environment (default: this one)")
  flags.DEFINE_string("gcp_project", "", "tpu: the GCP project")
  flags.DEFINE_string("zone", "", "tpu: the zone, e.g. us-west4-a")
  flags.DEFINE_enum("provisioning", "on-demand", PROVISIONING, "tpu: how the slices are "
                    "provisioned")
  flags.DEFINE_string("repo", "", "tpu: git URL the workers clone")
  flags.DEFINE_string("ref", "main", "tpu: branch, tag or commit the workers check out")


def main(argv: list[str]) -> None:
  f = flags.FLAGS
  try:
    plan = make_plan(
        f.config, f.sweep, f.executor, f.topology, f.workdir_root, f.experiment_name,
        extra_args=tuple(argv[1:]),
        tpu=TpuOptions(f.gcp_project, f.zone, f.provisioning, f.repo, f.ref), python=f.python)
  except ValueError as e:  # a bad flag: say which, without absl's page of usage
    print(f"xm_launch.py: error: {e}", file=sys.stderr)
    sys.exit(2)
  if f.dry_run:
    print(format_plan(plan))
    return
  try:
    launch(plan)
  except RuntimeError as e:
    if "xmanager is not installed" not in str(e):
      raise
    print(f"xm_launch.py: error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
