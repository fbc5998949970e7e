"""Multi-turn, multi-game play: batches of games of every configured kind at once, one game loop.

Who plays. Each ``GameRunner`` pairs a game with two sides, each an ``Agent``:

* a scripted ``Player`` (``(state, key) -> i32[]``, see ``games.experts``), stepped for a whole
  batch with one jitted ``jax.vmap``; or
* a ``TextAgent`` (``TextOpponent`` is the same class): a text policy with its own ``sample_fn``
  (the learner's weights, a frozen checkpoint, another Hugging Face model) that plays exactly like
  the learner: render the observation for the seat, apply SPIRAL's prompt template, tokenize,
  sample, parse the ``\\boxed{}`` move.

The *learner* side is ``runner.learner``, or when that is None the text policy given to
``play_round``/``collect`` (``sample_fn``, ``tokenizer``, ``template``): the trainer's case. The
*opponent* side is ``runner.opponent``; None means self-play (the learner plays both seats).
With an opponent, each game's learner seat is drawn at random. Only the learner's text moves are
recorded as ``Move`` samples; an opponent's moves never are, but its invalid moves forfeit the game
as usual (``core.Game.step``). A scripted learner records no samples (arenas use that, e.g. perfect
TicTacToe vs random).

Each turn, the rows of all kinds whose mover is the same ``TextAgent`` (by identity) go to that
agent in one sampler call: one call for the learner, one more per distinct text opponent, and
none more when the opponent *is* the learner object (a policy against itself in an arena). Each
distinct scripted player of a kind is one vmapped call over that kind's batch. Games are played
round after round until each kind has at least its quota of samples; then exactly the quota is
drawn without replacement (SPIRAL.md section 3). With an ``advantage_fn`` (training's RAE fold,
``rl.rae.Baselines``) each round's games are scored as they finish and, with ``filter_zero``,
moves of advantage exactly 0 are dropped before they count towards the quota, as the reference
filters before it draws. A round's games are numbered in collection order: by kind, then by
row, however long each took. All randomness comes from ``key`` (sampler seeds, scripted moves)
and ``rng`` (seat draws), so the same seed replays the same games.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spiral_jax.games import core
from spiral_jax.games.core import Player
from spiral_jax.play.agents import Agent, SampleFn, TextAgent, TextOpponent  # noqa: F401
from spiral_jax.text import templates

@dataclasses.dataclass
class Move:
  """One sample: a learner seat's prompt and response in one game."""
  prompt_ids: list[int]
  response_ids: list[int]  # as sampled, the stop token included
  kind: int          # index of the game kind in the config
  seat: int
  game: int          # index into Rollout.games (collection order)
  truncated: bool
  invalid: bool      # the response named no legal move (the game was forfeited)
  response_text: str = ""  # the decoded response without the stop token, as parsed
  advantage: float = float("nan")  # set by collect's advantage_fn (training's RAE)
  observation: str = ""    # the rendered observation the seat saw (before the template)
  move_text: str = ""      # the legal move it named ("" when invalid)


@dataclasses.dataclass
class FinishedGame:
  kind: int
  returns: np.ndarray  # f32[2]
  forfeited_by: int
  num_moves: int
  learner_seats: tuple[int, ...]
  row: int = 0          # its row in its round's batch of its kind
  round_games: int = 1  # games of its kind in its round


@dataclasses.dataclass
class Rollout:
  moves: list[Move]        # exactly the drawn samples, grouped by kind
  games: list[FinishedGame]  # every game finished while collecting, in collection order
  num_played_moves: int    # learner moves before the filter and the draw
  response_chars: float    # mean characters per learner response before the draw
  num_kept_moves: int = 0  # learner moves left by the zero-advantage filter, before the draw
  transcripts: list[int] = dataclasses.field(default_factory=list)  # games kept whole (indices)
  transcript_moves: list[Move] = dataclasses.field(default_factory=list)  # all their moves


@functools.lru_cache(maxsize=256)
def batched(fn: Callable) -> Callable:
  """``jax.jit(jax.vmap(fn))``, cached per function so rebuilt runners reuse compiled code."""
  return jax.jit(jax.vmap(fn))


def _check_agent(agent: Any, field: str) -> None:
  if agent is not None and not isinstance(agent, TextAgent) and not callable(agent):
    raise TypeError(f"GameRunner.{field}={agent!r} must be None, a scripted player "
                    "(state, key) -> action, or a TextAgent")


@dataclasses.dataclass
class GameRunner:
  """One game kind and who plays it (see the module docstring); jitted functions built once.

  opponent: None for self-play, else the agent of the seat the learner does not hold
  learner: None for ``play_round``'s text policy, else an agent (scripted or text)
  """
  game: core.Game
  opponent: Agent | None = None
  learner: Agent | None = None

  def __post_init__(self):
    _check_agent(self.opponent, "opponent")
    _check_agent(self.learner, "learner")
    self.init = batched(self.game.init)
    self.step = batched(self.game.step)

  def scripted_moves(self, player: Player) -> Callable:
    """The jitted, vmapped ``player``: (states, keys[B]) -> i32[B]."""
    return batched(player)


def _seat_owners(opponent: Agent | None, rng: np.random.Generator, n: int) -> np.ndarray:
  """bool[n, 2]: which seats the learner plays (both in self-play; one at random otherwise)."""
  if opponent is None:
    return np.ones((n, core.NUM_SEATS), bool)
  learner = rng.integers(0, core.NUM_SEATS, n)
  return np.arange(core.NUM_SEATS)[None, :] == learner[:, None]


def _seed(key: jax.Array) -> int:
  return int(jax.random.randint(key, (), 0, 2**31 - 1))


def _text_turn(agent: TextAgent, rows: list[tuple[int, int, int]], host: list, runners, seed: int
               ) -> tuple[list, list[str], list[list[int]], list[bool], list[int]]:
  """Render, template, tokenize, sample and parse the moves of ``rows`` ((kind, row, seat)).

  Returns per row: prompt ids, response text, response ids, truncated, action (or INVALID),
  observation.
  """
  games = [jax.tree.map(lambda x, r=row: x[r], host[k]) for k, row, _ in rows]
  observations = [runners[k].game.render(one, seat) for (k, _, seat), one in zip(rows, games)]
  texts = [templates.spiral_prompt(obs, agent.template) for obs in observations]
  ids = agent.tokenizer.encode_batch(texts)
  # keep the most recent history; the template's end survives
  ids = [p[-agent.max_prompt_tokens:] if len(p) > agent.max_prompt_tokens else p for p in ids]
  responses, response_ids, truncated = agent.sample_fn(ids, seed)
  actions = [runners[k].game.parse(text, one)
             for (k, _, _), text, one in zip(rows, responses, games)]
  return (ids, list(responses), [list(r) for r in response_ids], list(truncated), actions,
          observations)


def _agents(runners: Sequence[GameRunner], default: TextAgent | None, tokenizer, template: str,
            max_prompt_tokens: int) -> tuple[list[Agent], dict[int, TextAgent], np.ndarray]:
  """The distinct agents (by identity, in order of first appearance), the text ones among them
  with play_round's defaults filled in (by agent index), and i32[kinds, 2]: the agent index of
  each kind's (learner, opponent)."""
  sides: list[tuple[Agent, Agent]] = []
  for k, runner in enumerate(runners):
    learner = runner.learner if runner.learner is not None else default
    if learner is None:
      raise ValueError(f"runners[{k}] ({runner.game.id}) has no learner: pass sample_fn and "
                       "tokenizer to play_round, or build GameRunner(..., learner=agent)")
    sides.append((learner, runner.opponent if runner.opponent is not None else learner))
  agents: list[Agent] = []
  for pair in sides:
    for agent in pair:
      if all(agent is not a for a in agents):
        agents.append(agent)
  resolved = {}
  for g, agent in enumerate(agents):
    if isinstance(agent, TextAgent):
      agent = dataclasses.replace(
          agent, tokenizer=agent.tokenizer if agent.tokenizer is not None else tokenizer,
          template=agent.template or template,
          max_prompt_tokens=agent.max_prompt_tokens or max_prompt_tokens)
      if agent.tokenizer is None:
        raise ValueError(f"TextAgent {agent.name!r} has no tokenizer: set TextAgent.tokenizer "
                         "or pass tokenizer to play_round")
      resolved[g] = agent
  index = {id(a): g for g, a in enumerate(agents)}
  side_index = np.array([[index[id(a)] for a in pair] for pair in sides], np.int32)
  return agents, resolved, side_index.reshape(-1, 2)


def play_round(runners: Sequence[GameRunner], counts: Sequence[int], sample_fn: SampleFn | None,
               tokenizer, key: jax.Array, *, template: str = "qwen",
               rng: np.random.Generator, max_prompt_tokens: int = 1 << 20,
               game_offset: int = 0) -> tuple[list[Move], list[FinishedGame]]:
  """Plays ``counts[k]`` games of each kind to the end; returns the learner's text moves and the
  finished games (in collection order, by kind then row, numbered from ``game_offset``).

  ``sample_fn``/``tokenizer`` (with ``template``, ``max_prompt_tokens``) are the learner of every
  runner whose ``learner`` is None, and the defaults of any ``TextAgent`` that leaves its
  tokenizer, template or prompt limit unset; they may be None when no runner needs them.
  """
  default = TextAgent(sample_fn, name="learner") if sample_fn is not None else None
  agents, resolved, side_index = _agents(runners, default, tokenizer, template, max_prompt_tokens)

  states, owners = [], []
  for k, (runner, n) in enumerate(zip(runners, counts)):
    keys = jax.random.split(jax.random.fold_in(key, k), max(n, 1))
    states.append(runner.init(keys) if n else None)
    owners.append(_seat_owners(runner.opponent, rng, n))
  host = [jax.device_get(s) for s in states]  # one transfer per kind and turn, reused below
  pending: list[list[tuple[int, Move]]] = [[] for _ in runners]  # (game row, move) per kind
  finished: dict[tuple[int, int], FinishedGame] = {}  # by (kind, row)
  turn = 0
  while True:
    text_rows: dict[int, list[tuple[int, int, int, bool]]] = {g: [] for g in resolved}
    movers: list[np.ndarray | None] = []  # i32[n] per kind: the agent index moving in each row
    for k, s in enumerate(host):
      if s is None:
        movers.append(None)
        continue
      rows = np.arange(counts[k])
      mine = owners[k][rows, s.current_seat]
      mover = np.where(mine, side_index[k, 0], side_index[k, 1])
      mover[s.terminated] = -1
      movers.append(mover)
      for row in np.nonzero(np.isin(mover, list(resolved)))[0]:  # scripted rows stay vectorised
        text_rows[int(mover[row])].append((k, int(row), int(s.current_seat[row]),
                                           bool(mine[row])))
    if all(m is None or not (m >= 0).any() for m in movers):
      break
    actions = [np.full(counts[k], core.INVALID, np.int32) for k in range(len(runners))]
    turn_key = jax.random.fold_in(key, 1000 + turn)
    for g, rows in text_rows.items():
      if not rows:
        continue
      out = _text_turn(resolved[g], [r[:3] for r in rows], host, runners,
                       _seed(jax.random.fold_in(turn_key, g)))
      for (k, row, seat, is_learner), prompt, text, resp, trunc, action, obs in zip(rows, *out):
        actions[k][row] = action
        if is_learner:
          invalid = bool(action == core.INVALID)
          pending[k].append((row, Move(
              prompt, resp, k, seat, -1, bool(trunc), invalid, text, observation=obs,
              move_text="" if invalid else runners[k].game.action_text(int(action)))))
    for k, runner in enumerate(runners):
      if states[k] is None:
        continue
      for g in np.unique(movers[k][movers[k] >= 0]):
        if int(g) in resolved:
          continue
        keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(turn_key, 100 + k), g),
                                counts[k])
        scripted = np.asarray(runner.scripted_moves(agents[g])(states[k], keys))
        actions[k] = np.where(movers[k] == g, scripted, actions[k]).astype(np.int32)
      states[k] = runner.step(states[k], jnp.asarray(actions[k]))
      new_host = jax.device_get(states[k])
      for row in np.nonzero(new_host.terminated & ~host[k].terminated)[0]:
        finished[(k, int(row))] = FinishedGame(
            k, np.asarray(new_host.rewards[row], np.float32), int(new_host.forfeited_by[row]),
            int(new_host.num_moves[row]), tuple(np.nonzero(owners[k][row])[0].tolist()),
            int(row), counts[k])
      host[k] = new_host
    turn += 1
  order = sorted(finished)  # collection order: how long a game took does not move it
  index = {kr: game_offset + i for i, kr in enumerate(order)}
  moves: list[Move] = []
  for k in range(len(runners)):
    for row, move in pending[k]:
      move.game = index[(k, row)]
      moves.append(move)
  return moves, [finished[kr] for kr in order]


def collect(runners: Sequence[GameRunner], quotas: Sequence[int], games_per_round: int,
            sample_fn: SampleFn | None, tokenizer, key: jax.Array, *, template: str = "qwen",
            max_prompt_tokens: int = 1 << 20, max_rounds: int = 1000,
            advantage_fn: Callable[[list[Move], list[FinishedGame], int], np.ndarray] | None = None,
            filter_zero: bool = False, transcript_games: int = 0) -> Rollout:
  """Plays rounds until each kind has ``quotas[k]`` learner moves, then draws exactly that many.

  ``advantage_fn(moves, games, game_offset) -> f[len(moves)]`` scores each round's moves once
  its games are over (in collection order); with ``filter_zero`` only moves of nonzero advantage
  count and can be drawn. The first ``transcript_games`` games of each kind in the first round
  are kept whole (``Rollout.transcripts``: every learner move, drawn or not).
  """
  if filter_zero and advantage_fn is None:
    raise ValueError("filter_zero needs an advantage_fn to score the moves")
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  by_kind: list[list[Move]] = [[] for _ in runners]
  games: list[FinishedGame] = []
  played = 0
  chars: list[int] = []
  transcripts: list[int] = []
  transcript_moves: list[Move] = []
  for r in range(max_rounds):
    short = [q - len(m) for q, m in zip(quotas, by_kind)]
    if all(s <= 0 for s in short):
      break
    counts = [games_per_round if s > 0 else 0 for s in short]
    moves, finished = play_round(runners, counts, sample_fn, tokenizer, jax.random.fold_in(key, r),
                                 template=template, rng=rng, max_prompt_tokens=max_prompt_tokens,
                                 game_offset=len(games))
    if advantage_fn is not None:
      for m, a in zip(moves, advantage_fn(moves, finished, len(games))):
        m.advantage = float(a)
    if r == 0 and transcript_games:
      transcripts = [len(games) + i for i, g in enumerate(finished) if g.row < transcript_games]
      kept_whole = set(transcripts)
      transcript_moves = [m for m in moves if m.game in kept_whole]
    games.extend(finished)
    played += len(moves)
    chars += [len(m.response_text) for m in moves]
    for m in moves:
      if not (filter_zero and m.advantage == 0):
        by_kind[m.kind].append(m)
  else:
    raise RuntimeError(f"collected too few samples after {max_rounds} rounds: "
                       f"{[len(m) for m in by_kind]} for quotas {list(quotas)}")
  drawn = []
  for k, ms in enumerate(by_kind):
    pick = rng.choice(len(ms), quotas[k], replace=False)
    drawn.extend(ms[i] for i in sorted(pick))
  return Rollout(moves=drawn, games=games, num_played_moves=played,
                 response_chars=float(np.mean(chars)) if chars else 0.0,
                 num_kept_moves=sum(map(len, by_kind)), transcripts=transcripts,
                 transcript_moves=transcript_moves)


def to_json(r: Rollout) -> dict:
  """``r`` as JSON data (for ``multihost.gather_json``); ``from_json`` gives it back exactly."""
  return dataclasses.asdict(r)


def from_json(d: dict) -> Rollout:
  """The ``Rollout`` of ``to_json`` (or of its JSON decoding): returns f32, seats a tuple."""
  def game(g: dict) -> FinishedGame:
    return FinishedGame(**{**g, "returns": np.asarray(g["returns"], np.float32),
                           "learner_seats": tuple(g["learner_seats"])})
  return Rollout(**{**d, "moves": [Move(**m) for m in d["moves"]],
                    "games": [game(g) for g in d["games"]],
                    "transcript_moves": [Move(**m) for m in d["transcript_moves"]]})


def merge(parts: Sequence[Rollout]) -> Rollout:
  """Rollout shards as one rollout: games numbered on in shard order, moves grouped by kind (in
  shard order within a kind), counts summed."""
  moves: list[Move] = []
  games: list[FinishedGame] = []
  played, kept, chars = 0, 0, 0.0
  transcripts: list[int] = []
  transcript_moves: list[Move] = []
  for part in parts:
    moves += [dataclasses.replace(m, game=m.game + len(games)) for m in part.moves]
    transcripts += [i + len(games) for i in part.transcripts]
    transcript_moves += [dataclasses.replace(m, game=m.game + len(games))
                         for m in part.transcript_moves]
    games += part.games
    played += part.num_played_moves
    kept += part.num_kept_moves
    chars += part.response_chars * part.num_played_moves
  moves.sort(key=lambda m: m.kind)  # stable
  return Rollout(moves=moves, games=games, num_played_moves=played,
                 response_chars=chars / played if played else 0.0, num_kept_moves=kept,
                 transcripts=transcripts, transcript_moves=transcript_moves)
