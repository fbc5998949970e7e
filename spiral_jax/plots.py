"""Learning-curve PNGs from ``metrics.jsonl`` rows (matplotlib, headless)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("exploitability", "exploitability"), ("win_rate", "win rate"),
          ("invalid_rate", "invalid rate"), ("response_chars", "response length (chars)"))


def learning_curves(runs: dict[str, list[dict]], path: str) -> str:
  """One panel per metric family; ``runs`` maps names to metrics rows (several overlay, e.g. RAE
  vs no RAE)."""
  fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
  for ax, (needle, title) in zip(axes, PANELS):
    for name, run_rows in runs.items():
      keys = sorted({k for r in run_rows for k in r if needle in k and not k.endswith("ci95")})
      for k in keys:
        pts = [(r["step"], r[k]) for r in run_rows if r.get(k) is not None]
        if pts:
          label = k if len(runs) == 1 else f"{name}: {k}"
          ax.plot(*zip(*pts), marker=".", label=label)
    ax.set_title(title)
    ax.set_xlabel("policy step")
    if ax.lines:
      ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
