"""Imports run one way, downward (ARCHITECTURE.md): every import in ``spiral_jax/``, lazy ones
inside functions included, goes from a layer to a lower one (or stays within its own package),
no command line is imported, and no two files import each other in a circle."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "spiral_jax"

# The allowed direction, written once: a unit (a subpackage, or a top-level file) may import units
# of the layers above it in this list, never its own layer's other units nor the layers below.
LAYERS = (
    ("errors",),                           # the error a user can fix (the CLIs exit 2 on it)
    ("files", "workdir"),                  # writing files, the run folder's layout
    ("checkpoint", "metrics", "plots"),    # Orbax, metrics.jsonl + TensorBoard, PNGs
    ("text", "parallel"),                  # templates, extraction, tokenizers; meshes, hosts
    ("games", "model"),                    # the games; the transformer and its HF interop
    ("sampling",),                         # prefill, decode windows, shared prefixes
    ("memory",),                           # per-device bytes of sampler and learner, from shapes
    ("play",),                             # the game loop, text agents, opponents
    ("rl",),                               # RAE, losses, batching, the train step, warm-start
    ("eval",),                             # arenas, exploitability, reasoning, the suites
    ("config", "cli"),                     # the validated configuration; running a command line
    ("plan", "run"),                       # memory plans; a run's setup and loops
    ("train", "evaluate", "sft"),          # command lines: nothing imports them
)
COMMAND_LINES = {"spiral_jax.train", "spiral_jax.evaluate", "spiral_jax.sft",
                 "spiral_jax.plan.__main__"}


def _modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
  out = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(root.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    out[name] = path
  return out


def import_graph(root: pathlib.Path = ROOT) -> dict[str, set[str]]:
  """``{module: {spiral_jax modules it imports}}``, from the source (every import statement)."""
  modules = _modules(root)
  graph = {}
  for name, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets |= {a.name for a in node.names if a.name.split(".")[0] == root.name}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
          node.module.split(".")[0] == root.name):
        for alias in node.names:  # `from pkg import module` names a module, else an attribute
          full = f"{node.module}.{alias.name}"
          targets.add(full if full in modules else node.module)
    graph[name] = {t for t in targets if t in modules and t != name}
  return graph


def unit(module: str) -> str:
  """``spiral_jax.rl.rae`` -> ``rl``; ``spiral_jax.config`` -> ``config``."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def _layer(u: str) -> int:
  for i, units in enumerate(LAYERS):
    if u in units:
      return i
  raise AssertionError(f"spiral_jax.{u} is in no layer of LAYERS; add it where it belongs")


def violations(graph: dict[str, set[str]]) -> list[str]:
  """Every import that goes upward or sideways between units, or into a command line."""
  bad = []
  for source, targets in sorted(graph.items()):
    if unit(source) == "":  # the package root re-exports the public API
      continue
    for target in sorted(targets):
      su, tu = unit(source), unit(target)
      if target in COMMAND_LINES:
        bad.append(f"{source} imports the command line {target}")
      elif tu and su != tu and _layer(tu) >= _layer(su):
        bad.append(f"{source} imports {target}: {su} may not import {tu} (see LAYERS)")
  return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """File-level import circles (each found once, from its first module in sorted order)."""
  found, state = [], {}

  def visit(node, stack):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        found.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  return found


def test_imports_run_downward():
  graph = import_graph()
  assert len(graph) > 50 and graph["spiral_jax.run.trainer"]  # the walk found the package
  assert violations(graph) == []


def test_no_file_imports_itself_in_a_circle():
  assert cycles(import_graph()) == []


def test_no_file_is_over_400_lines():
  long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
          if (n := len(p.read_text().splitlines())) > 400}
  assert long == {}


def _tree(tmp_path, files: dict[str, str]) -> pathlib.Path:
  root = tmp_path / "spiral_jax"
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return root


@pytest.mark.parametrize("files, expected", [
    # an upward import, lazily inside a function
    ({"games/core.py": "def f():\n  from spiral_jax.rl import rae\n", "rl/rae.py": ""},
     ["spiral_jax.games.core imports spiral_jax.rl.rae: games may not import rl (see LAYERS)"]),
    # a sideways import between units of one layer
    ({"plan/planner.py": "import spiral_jax.run.setup\n", "run/setup.py": ""},
     ["spiral_jax.plan.planner imports spiral_jax.run.setup: plan may not import run (see LAYERS)"]),
    ({"run/setup.py": "from spiral_jax import evaluate\n", "evaluate.py": ""},
     ["spiral_jax.run.setup imports the command line spiral_jax.evaluate"]),
    ({"run/setup.py": "from spiral_jax.rl import rae\n", "rl/rae.py": "x = 1\n"}, []),
])
def test_the_checker_catches_what_it_should(tmp_path, files, expected):
  assert violations(import_graph(_tree(tmp_path, files))) == expected


def test_the_checker_catches_a_circle(tmp_path):
  root = _tree(tmp_path, {"rl/a.py": "from spiral_jax.rl import b\n",
                          "rl/b.py": "def f():\n  from spiral_jax.rl.a import x\n"})
  assert cycles(import_graph(root)) == [["spiral_jax.rl.a", "spiral_jax.rl.b", "spiral_jax.rl.a"]]
