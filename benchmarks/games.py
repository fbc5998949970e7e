"""Game steps per second: our ``jit(vmap(step))`` beside TextArena's loop and OpenSpiel's, one run.

Each side plays whole games with uniformly random legal moves, so the action choice is part of the
cost on every side. Ours runs ``max_moves`` steps of (random move, step) in one jitted ``lax.scan``
over a batch of games; only the steps of unfinished games count. Prints one JSON object.

  python benchmarks/games.py [--batches 1,1024,16384] [--seconds 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import time

import jax

import spiral_jax as sj

# TextArena (test extra) and OpenSpiel ids playing the same games; None where a peer lacks one.
PEERS = {
    "TicTacToe-v0": ("TicTacToe-v0", "tic_tac_toe"),
    "KuhnPoker-v1": ("KuhnPoker-v0", None),  # TextArena's v0 plays 3 rounds; ours 5 (see note)
    "SimpleNegotiation-v1": ("SimpleNegotiation-v0", None),
}
KUHN_SINGLE = ("KuhnPoker-v1/rounds=1", "kuhn_poker")


def _timed(fn, seconds: float) -> tuple[int, float]:
  """Calls ``fn() -> steps`` until ``seconds`` pass; returns (steps, elapsed)."""
  steps, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    steps += fn()
  return steps, time.perf_counter() - start


def ours(game, batch: int, seconds: float) -> dict:
  def play(key):
    state = jax.vmap(game.init)(jax.random.split(key, batch))

    def body(state, key):
      actions = jax.vmap(game.random_action)(state, jax.random.split(key, batch))
      active = (~state.terminated).sum()
      return jax.vmap(game.step)(state, actions), active

    state, active = jax.lax.scan(body, state, jax.random.split(key, game.max_moves))
    return active.sum(), state.terminated.all()

  play = jax.jit(play)
  start = time.perf_counter()
  steps, done = play(jax.random.key(0))
  assert bool(done)
  compile_s = time.perf_counter() - start
  counter = iter(range(1, 1 << 30))
  steps, elapsed = _timed(lambda: int(play(jax.random.key(next(counter)))[0]), seconds)
  return {"steps_per_s": steps / elapsed, "compile_s": compile_s}


def textarena(env_id: str, seconds: float) -> dict | None:
  try:
    import textarena as ta
  except ImportError:
    return None
  rng = random.Random(0)
  env = ta.make(env_id)

  def play():
    env.reset(num_players=2, seed=rng.randrange(1 << 30))
    steps, done = 0, False
    while not done and steps < 100:
      env.get_observation()
      done, _ = env.step(rng.choice(_textarena_moves(env)))
      steps += 1
    env.close()
    return steps

  steps, elapsed = _timed(play, seconds)
  return {"steps_per_s": steps / elapsed}


def _textarena_moves(env) -> list[str]:
  """Legal move strings from a TextArena env's own state."""
  base = env.unwrapped if hasattr(env, "unwrapped") else env
  while hasattr(base, "env"):
    base = base.env
  game_state = base.state.game_state
  if "board" in game_state:
    board = game_state["board"]
    return [f"[{r * 3 + c}]" for r in range(3) for c in range(3) if board[r][c] == ""]
  if "current_legal_action_tree" in game_state:
    return [f"[{k}]" for k in game_state["current_legal_action_tree"]]
  return ["[Accept]", "[Deny]", "[Offer: 1 Wood -> 1 Sheep]"]


def openspiel(name: str, seconds: float) -> dict | None:
  try:
    import pyspiel
  except ImportError:
    return None
  game = pyspiel.load_game(name)
  rng = random.Random(0)

  def play():
    state, steps = game.new_initial_state(), 0
    while not state.is_terminal():
      if state.is_chance_node():
        actions, probs = zip(*state.chance_outcomes())
        state.apply_action(rng.choices(actions, probs)[0])
      else:
        state.apply_action(rng.choice(state.legal_actions()))
        steps += 1
    return steps

  steps, elapsed = _timed(play, seconds)
  return {"steps_per_s": steps / elapsed}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batches", default="1,1024,16384")
  parser.add_argument("--seconds", type=float, default=2.0)
  args = parser.parse_args()
  batches = [int(b) for b in args.batches.split(",")]
  rows = []
  cases = [(gid, sj.games.make(gid), *PEERS[gid]) for gid in PEERS]
  cases.append((KUHN_SINGLE[0], sj.games.make("KuhnPoker-v1", rounds=1), None, KUHN_SINGLE[1]))
  for name, game, ta_id, os_name in cases:
    row = {"game": name}
    for batch in batches:
      row[f"ours_batch_{batch}"] = ours(game, batch, args.seconds)
    row["textarena"] = textarena(ta_id, args.seconds) if ta_id else None
    row["textarena_id"] = ta_id
    row["openspiel"] = openspiel(os_name, args.seconds) if os_name else None
    best_peer = max((r["steps_per_s"] for r in (row["textarena"], row["openspiel"]) if r),
                    default=None)
    if best_peer:
      row["speedup_vs_best_peer"] = {
          f"batch_{b}": row[f"ours_batch_{b}"]["steps_per_s"] / best_peer for b in batches}
    rows.append(row)
  print(json.dumps({
      "benchmark": "game steps per second (random legal play, whole games)",
      "machine": {"platform": platform.platform(), "jax_backend": jax.default_backend(),
                  "devices": jax.device_count(), "cpus": __import__("os").cpu_count()},
      "results": rows,
  }, indent=1))


if __name__ == "__main__":
  main()
