"""A few whole games per step, every response included: ``workdir/transcripts/step_<N>.jsonl``
(one game per line) and ``step_<N>.md`` (the same, to read), as the reference dumps its game
states each step, so a collapse of the reasoning can be seen with one's own eyes."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

from spiral_jax import files
from spiral_jax.games import core
from spiral_jax.play import rollout


def records(r: rollout.Rollout, game_ids: Sequence[str]) -> list[dict]:
  """One JSON-able dict per transcribed game of ``r`` (``Rollout.transcripts``)."""
  out = []
  for index in r.transcripts:
    game = r.games[index]
    moves = [m for m in r.transcript_moves if m.game == index]
    out.append({
        "game": game_ids[game.kind], "index": index, "returns": game.returns.tolist(),
        "forfeited_by": None if game.forfeited_by == core.NO_SEAT else game.forfeited_by,
        "learner_seats": list(game.learner_seats), "num_moves": game.num_moves,
        "moves": [{"seat": m.seat, "observation": m.observation, "response": m.response_text,
                   "move": m.move_text, "invalid": m.invalid, "truncated": m.truncated,
                   "advantage": m.advantage}  # NaN (not scored) becomes null
                  for m in moves]})
  return files.jsonable(out)


def page(step: int, games: Sequence[dict]) -> str:
  """The readable page: each game's moves, observation then response."""
  lines = [f"# Step {step}: {len(games)} games", ""]
  for g in games:
    lines += [f"## {g['game']} (game {g['index']}): returns {g['returns']}, "
              f"{g['num_moves']} moves, learner seats {g['learner_seats']}", ""]
    for i, m in enumerate(g["moves"], 1):
      status = ("invalid" if m["invalid"] else m["move"]) + (", truncated" if m["truncated"] else "")
      lines += [f"### Move {i}: seat {m['seat']} plays {status} (advantage {m['advantage']})", "",
                "```text", m["observation"], "```", "", "Response:", "", "```text", m["response"],
                "```", ""]
  return "\n".join(lines)


def write(folder: str, step: int, games: Sequence[dict]) -> None:
  """Writes step ``step``'s transcripts (nothing when ``games`` is empty)."""
  if not games:
    return
  base = os.path.join(folder, f"step_{step:06d}")
  files.atomic_write(base + ".jsonl",
                     "".join(json.dumps(g, allow_nan=False) + "\n" for g in games))
  files.atomic_write(base + ".md", page(step, games))
