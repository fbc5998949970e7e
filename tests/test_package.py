"""The package's import contract: the public names exist; torch and transformers stay test-only."""
import subprocess
import sys


def test_import_pulls_in_neither_torch_nor_transformers():
  code = ("import sys, spiral_jax, spiral_jax.rl.trainer, spiral_jax.train, spiral_jax.eval.kuhn_exact;"
          "bad = [m for m in ('torch', 'transformers') if m in sys.modules];"
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_public_entry_points():
  import spiral_jax as sj
  for name in ("make", "list_games", "INVALID", "TRAIN_FORFEIT", "EVAL_FORFEIT"):
    assert hasattr(sj.games, name)
  assert callable(sj.model.Policy.from_hf) and callable(sj.model.export_hf)
  assert callable(sj.sampling.generate)
