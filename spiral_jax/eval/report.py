"""One evaluation's report: every section as JSON (``eval/<name>.json``), a readable page
(``eval/<name>.md``) and the flat ``eval/...`` numbers of ``metrics.jsonl``."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping

from spiral_jax import files
from spiral_jax.eval import arena, kuhn_exact

# Arena numbers kept in metrics.jsonl (the JSON report has every seat and interval).
ARENA_METRICS = ("win_rate", "draw_rate", "loss_rate", "mean_reward", "agent_forfeit_rate",
                 "opponent_forfeit_rate", "invalid_rate", "truncated_rate", "response_tokens",
                 "response_chars")


@dataclasses.dataclass
class EvalReport:
  """Every section of one evaluation; ``reasoning`` is None when no benchmark is configured."""
  arena: dict[str, dict[str, arena.ArenaResult]]
  kuhn: dict[str, dict[str, dict]]
  reasoning: dict[str, Any] | None
  settings: dict[str, Any]

  def metrics(self) -> dict[str, float]:
    """Flat ``eval/...`` numbers for metrics.jsonl (names: ``eval/suites.py``)."""
    m: dict[str, float] = {}
    for game_id, by_opponent in self.arena.items():
      for result in by_opponent.values():
        prefix = f"eval/{game_id}/vs_{result.opponent}"
        flat = result.to_metrics(prefix)
        m.update({f"{prefix}/{n}": flat[f"{prefix}/{n}"] for n in ARENA_METRICS
                  if f"{prefix}/{n}" in flat})
        reward = result.overall.reward
        m[f"{prefix}/reward_ci95"] = (reward.high - reward.low) / 2
    for game_id, reports in self.kuhn.items():
      m[f"eval/{game_id}/exploitability"] = reports["scored"]["exploitability"]
      m[f"eval/{game_id}/off_format_mass"] = reports["scored"]["invalid_mass_mean"]
      if "sampled" in reports:
        m[f"eval/{game_id}/exploitability_sampled"] = reports["sampled"]["exploitability"]
        m[f"eval/{game_id}/invalid_mass_sampled"] = reports["sampled"]["invalid_mass_mean"]
    if self.reasoning is not None:
      from spiral_jax.eval import reasoning
      m.update(reasoning.flat_metrics(self.reasoning))
    return {k: float(v) for k, v in m.items()}

  def to_json(self, **header: Any) -> dict[str, Any]:
    """Every section (``header`` first: step, source, ...); NaN becomes None."""
    return files.jsonable({
        **header, "settings": self.settings,
        "arena": {g: {o: r.to_json() for o, r in by.items()} for g, by in self.arena.items()},
        "kuhn_exploitability": self.kuhn, "reasoning": self.reasoning,
        "metrics": self.metrics()})

  def to_markdown(self, title: str = "Evaluation") -> str:
    s = self.settings
    lines = [f"# {title}", "",
             (f"Games: {s['num_games']} per game and opponent, temperature {s['temperature']}, "
              f"top-p {s['top_p']}, up to {s['max_new_tokens']} new tokens, template "
              f"{s['template']!r}; forfeits score -1/+1."), "", "## Arena", ""]
    for by_opponent in self.arena.values():
      for result in by_opponent.values():
        lines += [result.to_markdown()]
    lines += ["## Kuhn Poker exploitability (single round)", ""]
    lines += _kuhn_markdown(self.kuhn) if self.kuhn else [
        "No single-round Kuhn Poker game in this evaluation.", ""]
    lines += ["## Reasoning", ""]
    lines += _reasoning_markdown(self.reasoning) if self.reasoning else [
        "No benchmark configured (set eval.reasoning and eval.data_dir).", ""]
    return "\n".join(lines)

  def write(self, folder: str, name: str, title: str | None = None,
            **header: Any) -> tuple[str, str]:
    """Writes ``folder/name.json`` and ``folder/name.md``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    json_path, md_path = os.path.join(folder, f"{name}.json"), os.path.join(folder, f"{name}.md")
    files.atomic_write(json_path, json.dumps(self.to_json(**header), indent=1,
                                             allow_nan=False) + "\n")
    files.atomic_write(md_path, self.to_markdown(title or f"Evaluation {name}"))
    return json_path, md_path


def unused_name(folder: str, base: str) -> str:
  """``base``, or ``base-2``, ``base-3``, ... : the first whose ``.json`` and ``.md`` do not exist
  in ``folder``, so a report never replaces another."""
  name, n = base, 1
  while any(os.path.exists(os.path.join(folder, f"{name}{ext}")) for ext in (".json", ".md")):
    n += 1
    name = f"{base}-{n}"
  return name


def _kuhn_markdown(kuhn: Mapping[str, Mapping[str, dict]]) -> list[str]:
  lines = []
  for game_id, reports in kuhn.items():
    lines += [f"{game_id}: exploitability 0 at equilibrium, 0.4583 for uniform play; the "
              f"first mover's equilibrium value is {kuhn_exact.EQUILIBRIUM_VALUE:+.4f}.", "",
              "| estimate | exploitability | NashConv | best response (seat 0, seat 1) | "
              "on-policy value seat 0 | mass off the moves |",
              "| --- | ---: | ---: | --- | ---: | ---: |"]
    for how, r in reports.items():
      br = ", ".join(f"{v:+.4f}" for v in r["best_response_values"])
      label = how if how == "scored" else f"sampled ({r['samples_per_info_state']} per set)"
      lines.append(f"| {label} | {r['exploitability']:.4f} | {r['nash_conv']:.4f} | {br} | "
                   f"{r['on_policy_values'][0]:+.4f} | {r['invalid_mass_mean']:.3f} |")
    lines += ["", "P(bet or call) at each OpenSpiel information state (invalid mass in brackets):",
              "", "| estimate | " + " | ".join(f"`{s}`" for s in kuhn_exact.INFO_STATES) + " |",
              "| --- |" + " ---: |" * len(kuhn_exact.INFO_STATES)]
    for how, r in reports.items():
      cells = [f"{r['distributions'][s][1]:.2f} [{r['invalid_mass'][s]:.2f}]"
               for s in kuhn_exact.INFO_STATES]
      lines.append(f"| {how} | " + " | ".join(cells) + " |")
    lines.append("")
  return lines


def _reasoning_markdown(result: Mapping[str, Any]) -> list[str]:
  s = result["settings"]
  lines = [(f"Temperature {s['temperature']}, top-p {s['top_p']}, up to "
            f"{s.get('max_new_tokens_used', s['max_new_tokens'])} new tokens; pass@1 is the mean "
            "over problems of the fraction of correct samples."), "",
           "| benchmark | pass@1 [95% interval over problems] | boxed | response tokens | "
           "problems x samples |",
           "| --- | ---: | ---: | ---: | ---: |"]
  for name, b in result["benchmarks"].items():
    tokens = b.get("mean_response_tokens", math.nan)
    half = b.get("pass@1_ci95")
    interval = ("n/a" if half is None or not math.isfinite(half) else
                f"{b['pass@1'] - half:.3f}, {b['pass@1'] + half:.3f}")
    lines.append(f"| {name} | {b['pass@1']:.3f} [{interval}] | {b['boxed_rate']:.3f} | "
                 f"{tokens:.1f} | {b['num_problems']} x {b['num_samples']} |")
  lines += [f"| **average** | **{result['average_pass@1']:.3f}** | | | |", ""]
  return lines
