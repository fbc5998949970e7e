"""The package's import contract: the public names exist; torch and transformers stay test-only."""
import subprocess
import sys


def test_import_pulls_in_neither_torch_nor_transformers():
  code = ("import sys, spiral_jax, spiral_jax.run.trainer, spiral_jax.train, spiral_jax.eval.kuhn_exact;"
          "bad = [m for m in ('torch', 'transformers') if m in sys.modules];"
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_public_entry_points():
  import spiral_jax as sj
  for name in ("make", "list_games", "INVALID", "TRAIN_FORFEIT", "EVAL_FORFEIT"):
    assert hasattr(sj.games, name)
  assert callable(sj.model.Policy.from_hf) and callable(sj.model.export_hf)
  assert callable(sj.sampling.generate)


def test_every_third_party_import_is_a_declared_dependency():
  """A module the package imports must come from a distribution setup.cfg installs directly (a
  test-only install can hide a missing one: torch brings sympy, for example)."""
  import ast
  import configparser
  import importlib.metadata
  import pathlib
  import re

  root = pathlib.Path(__file__).resolve().parents[1]
  cfg = configparser.ConfigParser()
  cfg.read(root / "setup.cfg")
  declared = {re.split(r"[<>=!~\[; ]", line.strip())[0].lower().replace("_", "-")
              for line in cfg["options"]["install_requires"].splitlines()
              if line.strip() and not line.strip().startswith("#")}
  dists = importlib.metadata.packages_distributions()
  missing = {}
  for path in (root / "spiral_jax").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
      for name in names:
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == "spiral_jax":
          continue
        owners = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
        if not owners & declared:
          missing.setdefault(top, set()).add(path.relative_to(root).as_posix())
  assert not missing, f"imported but not in setup.cfg install_requires: {missing}"
