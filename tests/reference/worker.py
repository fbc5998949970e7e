"""Runs inside ``.venv-oracle`` (TextArena 0.6.4 + spiral-rl 0.2.0): answers one JSON request on
stdin with JSON on stdout. Nothing of spiral_jax is imported here; this is the reference alone.

Ops:
- ``extract``: ``texts`` -> the reference's move string for each response, or ``null`` where it
  raised (the reference then plays its invalid move).
- ``play``: ``games`` = [{env_id, seed, moves}] -> per game the (seat, observation) before every
  move, the legal moves the reference parses from it, its state's cards where it has them, and
  the rewards at the end. With ``all_seats`` (LLMObservationWrapper games) also the other seat's
  observation at every step and both seats' observations at the end (``final``).
"""
import json
import sys
import types
import importlib.util
import pathlib


def _load_spiral():
  """``spiral.core`` and ``spiral.tinker.renderer`` without the package ``__init__``s, which
  import the oat and tinker back-ends (heavy dependencies): bare packages over the folders."""
  root = pathlib.Path(importlib.util.find_spec("spiral").origin).parent
  for name, folder in (("spiral", root), ("spiral.tinker", root / "tinker")):
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(folder)]
    sys.modules[name] = pkg


def _stub_tinker():
  """Just enough of tinker, weave and tinker_cookbook for ``spiral.tinker.renderer`` to import;
  its base renderer hands the response text through unchanged."""
  class Renderer:
    def __init__(self, tokenizer):
      self.tokenizer = tokenizer

  class PassThrough:
    def parse_response(self, response):
      return {"role": "assistant", "content": response}, True

  mods = {
      "tinker": {"ModelInput": object},
      "weave": {"op": lambda *a, **k: (lambda f: f)},
      "tinker_cookbook": {},
      "tinker_cookbook.renderers": {"Message": dict, "Renderer": Renderer, "Role": str,
                                    "get_renderer": lambda name, tok: PassThrough()},
      "tinker_cookbook.tokenizer_utils": {"Tokenizer": object, "get_tokenizer": lambda n: None},
  }
  for name, attrs in mods.items():
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m


def extract(texts):
  """``train_spiral.py``'s ``extract_action`` for the qwen templates, from the installed code:
  ``spiral.core.utils.extract_boxed_answer``, falling back to the stripped text when it finds no
  box (the one qwen-branch line of ``train_spiral.py``), then the Tinker renderer's
  ``parse_response``, which carries the same three formatting steps (``[x]`` for inner boxes,
  brackets for at most 5 words, whitespace collapsed). The caller checks the legal moves."""
  _stub_tinker()
  from spiral.core import utils
  from spiral.tinker import renderer

  def qwen_branch(text):
    raw = utils.extract_boxed_answer(text)
    return text.strip() if raw is None else raw

  renderer.extract_boxed_answer = qwen_branch
  spiral_renderer = renderer.SpiralRenderer(None, "qwen3")
  out = []
  for text in texts:
    if not text:
      out.append("")  # extract_action's first line
      continue
    try:
      out.append(spiral_renderer.parse_response(text)[0]["content"])
    except Exception:  # extract_action turns any exception into its invalid move
      out.append(None)
  return out


def _seen(env, pid):
  """What the LLMObservationWrapper shows ``pid`` now: its pending messages are taken as
  ``get_observation`` takes them, so the later observations come out the same."""
  pending, env.state.observations[pid] = env.state.observations[pid], []
  return env.observation(pid, pending)


def play(games):
  import random
  import spiral.core.envs as envs
  from spiral.core.agents.utils import get_valid_action_parser
  llm_wrapped = {"TicTacToe-v0": False, "KuhnPoker-v1": True, "SimpleNegotiation-v1": True}
  out = []
  for g in games:
    random.seed(g["seed"])  # TextArena's Kuhn deals with the global random module
    env = envs.make_env(g["env_id"], llm_wrapped[g["env_id"]])
    env.reset(num_players=2, seed=g["seed"])
    env.state.error_allowance = 0  # as train_spiral.py: an invalid move ends the game
    parser = get_valid_action_parser(g["env_id"])
    steps, done = [], False
    for move in g["moves"]:
      seat, obs = env.get_observation()
      gs = env.state.game_state
      steps.append({"seat": seat, "observation": obs,
                    "legal": parser(obs) if parser else None,
                    "cards": gs.get("player_cards")})
      if g.get("all_seats"):  # the other seat's view too, taken as get_observation takes it
        steps[-1]["other_observation"] = _seen(env, 1 - seat)
      done, _ = env.step(action=move)
      if done:
        break
    rewards = env.close() if done else None
    out.append({"steps": steps, "done": done,
                "rewards": {str(k): v for k, v in rewards.items()} if rewards else None})
    if g.get("all_seats"):  # what each seat would be shown once the game has stopped
      out[-1]["final"] = {str(p): _seen(env, p) for p in range(2)}
  return out


def main():
  request = json.loads(sys.stdin.read())
  _load_spiral()
  op = request.pop("op")
  json.dump({"extract": extract, "play": play}[op](**request), sys.stdout)


if __name__ == "__main__":
  main()
