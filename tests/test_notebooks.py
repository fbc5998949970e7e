"""The three notebooks run headless (nbclient) with tiny parameters and draw their plots.

Each notebook reads its parameters from ``SPIRAL_NB_*`` environment variables in its first cell
(tagged ``parameters``); here they select ``tests/tiny_config.py``, two policy steps and no
warm-start. The kernel is this venv's Python, started from a kernelspec written to a temporary
folder (so no ``ipykernel install`` and no user-level kernelspec is involved), on one CPU device
rather than the 8 fake ones of conftest.
"""
import json
import os
import pathlib
import re
import sys

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TINY_CONFIG = ROOT / "tests" / "tiny_config.py"
KERNEL = "spiral-jax-test"
CELL_TIMEOUT_S = 600  # the training cell compiles the sampler and learner on busy CPUs
TINY = {"CONFIG": TINY_CONFIG, "STEPS": 2, "WARM_START_STEPS": 0, "EVAL_EVERY": 0,
        "EVAL_GAMES": 4}


def _kernel_manager(folder: pathlib.Path) -> KernelManager:
  """A manager for a kernel running this interpreter (``sys.executable``)."""
  spec = folder / "kernels" / KERNEL
  spec.mkdir(parents=True, exist_ok=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "spiral_jax test kernel", "language": "python"}))
  return KernelManager(kernel_name=KERNEL, connection_file=str(folder / "connection.json"),
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder / "kernels")]))


def _kernel_env(folder: pathlib.Path, params: dict) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith("SPIRAL_NB_") and k not in ("MPLBACKEND", "XLA_FLAGS")}
  env.update(JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
             IPYTHONDIR=str(folder / "ipython"), JUPYTER_RUNTIME_DIR=str(folder / "runtime"))
  env.update({f"SPIRAL_NB_{k}": str(v) for k, v in params.items()})
  return env


def run_notebook(name: str, folder: pathlib.Path, **params) -> nbformat.NotebookNode:
  """Executes ``notebooks/<name>`` with ``params`` as SPIRAL_NB_* variables; returns it executed
  (also saved under ``folder`` for inspection). A cell error fails the test with its traceback."""
  folder.mkdir(parents=True, exist_ok=True)
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  client = nbclient.NotebookClient(
      nb, km=_kernel_manager(folder), timeout=CELL_TIMEOUT_S, allow_errors=False,
      resources={"metadata": {"path": str(NOTEBOOKS)}})
  try:
    client.execute(cleanup_kc=True, env=_kernel_env(folder, params))  # shut it down after
  finally:
    nbformat.write(nb, folder / name)
  return nb


def _text(nb) -> str:
  """Everything the notebook printed."""
  out = []
  for cell in nb.cells:
    for o in cell.get("outputs", []):
      if o.get("output_type") == "stream":
        out.append(o["text"])
      elif "data" in o and "text/plain" in o["data"]:
        out.append(o["data"]["text/plain"])
  return "".join(out)


def _images(nb) -> int:
  return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def _assert_png(path: pathlib.Path) -> None:
  assert path.exists(), f"{path} was not written"
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
  """The executed quickstart and its run folder (a tiny trained run the other notebooks read)."""
  folder = tmp_path_factory.mktemp("quickstart")
  workdir = folder / "run"
  nb = run_notebook("quickstart.ipynb", folder, WORKDIR=workdir, PLAY_GAMES=2, **TINY)
  return nb, workdir


@pytest.mark.parametrize("name", ["quickstart.ipynb", "play.ipynb", "analyze_run.ipynb"])
def test_notebooks_are_committed_clean_for_colab(name):
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  nbformat.validate(nb)
  assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs"
  assert code[0].metadata.get("tags") == ["parameters"]
  assert "SPIRAL_NB_" in code[0].source


def test_quickstart_trains_plots_and_plays(quickstart):
  nb, workdir = quickstart
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2]
  _assert_png(workdir / "learning_curves.png")
  assert _images(nb) == 1
  text = _text(nb)
  assert "trained to step 2" in text
  assert len(re.findall(r"rewards: policy [+-]\d, random [+-]\d", text)) == 2
  assert text.count("the policy answered") >= 2  # it moves in both games (seat 0 and seat 1)


def test_analyze_run_plots_the_quickstart_run(quickstart, tmp_path):
  _, workdir = quickstart
  nb = run_notebook("analyze_run.ipynb", tmp_path, RUN_DIR=workdir, OUT_DIR=tmp_path / "plots")
  _assert_png(tmp_path / "plots" / "analysis.png")
  assert _images(nb) == 1
  text = _text(nb)
  assert "2 rows from jsonl, steps 1..2" in text
  same, total = map(int, re.search(r"match metrics.jsonl: (\d+) of (\d+) values", text).groups())
  assert same == total > 50  # the event files hold every finite value of metrics.jsonl


def test_play_against_the_quickstart_checkpoint(quickstart, tmp_path):
  _, workdir = quickstart
  nb = run_notebook("play.ipynb", tmp_path, POLICY_WORKDIR=workdir, HUMAN_SEAT=1,
                    HUMAN_MOVES="[call];[check]")
  text = _text(nb)
  assert f"the policy of {workdir} at step 2" in text
  assert "the policy (seat 0) answered" in text
  assert re.search(r"final rewards: you [+-]\d, the policy [+-]\d", text)


def test_play_against_the_expert_headless(tmp_path):
  """Seat 0 in single-round Kuhn Poker moves once, after seat 1's check or bet."""
  nb = run_notebook("play.ipynb", tmp_path, HUMAN_MOVES="[call];[check]", SEED=3)
  text = _text(nb)
  assert "Your card is" in text and re.search(r"you \(seat 0\) play \[(call|check)\]", text)
  assert re.search(r"final rewards: you [+-]\d, the expert [+-]\d", text)
