"""The arena: N games of an agent against an opponent, random seats, with confidence intervals.

  result = play_arena(game, agents.text_agent(policy, max_new_tokens=256), "random", key=0)
  result = play_arena(game, "expert", "random", num_games=2000, key=0)   # scripted vs scripted
  result = play_arena(game, agent, "self", key=0)                        # a policy against itself
  result.overall.win.rate, result.seats[1].reward.mean, result.to_json(), result.to_markdown()

Agents and opponents are ``rollout`` agents: a scripted player ``(state, key) -> action``, a
``rollout.TextAgent`` (``play.agents.text_agent`` builds one from a ``Policy``), or the names ``'random'`` and
``'expert'`` (``games.experts``); the opponent may also be ``'self'``, the agent itself. The games
run through ``rollout.play_round`` (one game loop), all ``games_per_batch`` at once: every text
move of a turn goes through one sampler call per text agent (one in total against itself).
Forfeits are scored as in evaluation (``core.EVAL_FORFEIT``: -1 for the offender, +1 for the
other seat) unless ``forfeit=`` says otherwise.

Statistics, from the agent's side: win/draw/loss and forfeit rates (by the agent and by the
opponent) with Wilson score 95% intervals, mean reward (chips in single-round Kuhn Poker) with a
normal 95% interval, overall and per agent seat; for a text agent also its mean response length
in tokens (as sampled, the stop token included) and characters (the decoded text), and its
invalid-move and truncation rates.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from spiral_jax import files
from spiral_jax.games import core, experts
from spiral_jax.play import rollout

SELF = "self"
DEFAULT_NUM_GAMES = 512  # SPIRAL.md section 5


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """The Wilson score interval of a binomial proportion ``successes / n`` (z=1.96: 95%).

  ``n == 0`` gives (0, 1): no information.
  """
  if n < 0 or not 0 <= successes <= n:
    raise ValueError(f"wilson_interval: need 0 <= successes <= n, got successes={successes}, "
                     f"n={n}")
  if n == 0:
    return 0.0, 1.0
  p = successes / n
  z2 = z * z
  denominator = 1 + z2 / n
  center = (p + z2 / (2 * n)) / denominator
  half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
  return max(0.0, center - half), min(1.0, center + half)


@dataclasses.dataclass(frozen=True)
class Rate:
  """``count`` of ``n`` games (or moves), with the Wilson 95% interval [low, high]."""
  count: int
  n: int
  rate: float
  low: float
  high: float

  @classmethod
  def of(cls, flags: Sequence[bool] | np.ndarray) -> Rate:
    flags = np.asarray(flags, bool)
    count, n = int(flags.sum()), int(flags.size)
    low, high = wilson_interval(count, n)
    return cls(count, n, count / n if n else math.nan, low, high)


@dataclasses.dataclass(frozen=True)
class Mean:
  """The mean of ``n`` values with a normal 95% interval (sample standard deviation)."""
  mean: float
  n: int
  low: float
  high: float

  @classmethod
  def of(cls, values: Sequence[float] | np.ndarray, z: float = 1.96) -> Mean:
    values = np.asarray(values, np.float64)
    n = int(values.size)
    if n == 0:
      return cls(math.nan, 0, math.nan, math.nan)
    mean = float(values.mean())
    half = z * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return cls(mean, n, mean - half, mean + half)


@dataclasses.dataclass(frozen=True)
class Record:
  """Results of a set of games, from the agent's side."""
  games: int
  win: Rate
  draw: Rate
  loss: Rate
  agent_forfeit: Rate      # games the agent lost by an invalid move
  opponent_forfeit: Rate   # games the opponent lost by an invalid move
  reward: Mean             # the agent's terminal reward (chips in single-round Kuhn Poker)
  moves_per_game: float


@dataclasses.dataclass(frozen=True)
class TextStats:
  """The text agent's own moves: response length, invalid and truncated moves."""
  moves: int
  response_tokens: float   # mean tokens as sampled, the stop token included
  response_chars: float    # mean characters of the decoded response
  invalid: Rate
  truncated: Rate


@dataclasses.dataclass(frozen=True)
class ArenaResult:
  game: str
  agent: str
  opponent: str
  overall: Record
  seats: tuple[Record, Record]  # the agent in seat 0, in seat 1
  agent_text: TextStats | None  # None for a scripted agent

  def to_json(self) -> dict[str, Any]:
    """A JSON-ready dict (NaN becomes None); intervals as ``[low, high]``."""
    return files.jsonable(dataclasses.asdict(self))

  def to_metrics(self, prefix: str | None = None) -> dict[str, float]:
    """Flat ``metrics.jsonl`` names, by default under ``eval/{game}/vs_{opponent}/``."""
    prefix = prefix if prefix is not None else f"eval/{self.game}/vs_{self.opponent}"
    m: dict[str, float] = {}
    parts = [("", self.overall)] + [(f"seat{s}/", r) for s, r in enumerate(self.seats)]
    for where, record in parts:
      for name in ("win", "draw", "loss", "agent_forfeit", "opponent_forfeit"):
        rate = getattr(record, name)
        m[f"{prefix}/{where}{name}_rate"] = rate.rate
        m[f"{prefix}/{where}{name}_rate_low"] = rate.low
        m[f"{prefix}/{where}{name}_rate_high"] = rate.high
      m[f"{prefix}/{where}mean_reward"] = record.reward.mean
      m[f"{prefix}/{where}mean_reward_low"] = record.reward.low
      m[f"{prefix}/{where}mean_reward_high"] = record.reward.high
      m[f"{prefix}/{where}moves_per_game"] = record.moves_per_game  # the game length
    if self.agent_text is not None:
      t = self.agent_text
      m.update({f"{prefix}/invalid_rate": t.invalid.rate, f"{prefix}/truncated_rate":
                t.truncated.rate, f"{prefix}/response_tokens": t.response_tokens,
                f"{prefix}/response_chars": t.response_chars})
    return m

  def to_markdown(self) -> str:
    """A table: one row overall and one per agent seat."""
    lines = [(f"**{self.agent}** vs **{self.opponent}** in {self.game} "
              f"({self.overall.games} games, 95% intervals)"), "",
             ("| seat | games | win | draw | loss | forfeit (agent) | forfeit (opponent) "
              "| mean reward | moves/game |"),
             "| --- | ---: | --- | --- | --- | --- | --- | --- | ---: |"]
    for label, r in [("all", self.overall), ("0", self.seats[0]), ("1", self.seats[1])]:
      cells = [_rate_cell(getattr(r, n)) for n in
               ("win", "draw", "loss", "agent_forfeit", "opponent_forfeit")]
      lines.append(f"| {label} | {r.games} | " + " | ".join(cells) +
                   f" | {_mean_cell(r.reward)} | {r.moves_per_game:.2f} |")
    if self.agent_text is not None:
      t = self.agent_text
      lines += ["", (f"{self.agent}: {t.moves} moves, {t.response_tokens:.1f} tokens and "
                     f"{t.response_chars:.1f} characters per response, invalid "
                     f"{_rate_cell(t.invalid)}, truncated {_rate_cell(t.truncated)}")]
    return "\n".join(lines) + "\n"


def _rate_cell(r: Rate) -> str:
  return "n/a" if r.n == 0 else f"{r.rate:.3f} [{r.low:.3f}, {r.high:.3f}]"


def _mean_cell(m: Mean) -> str:
  return "n/a" if m.n == 0 else f"{m.mean:+.3f} [{m.low:+.3f}, {m.high:+.3f}]"


@functools.lru_cache(maxsize=64)
def with_forfeit(game: core.Game, forfeit: core.Forfeit) -> core.Game:
  """``game`` scoring invalid moves with ``forfeit`` (a copy when it differs; cached, so repeated
  arenas reuse the compiled game)."""
  if game.forfeit == forfeit:
    return game
  other = copy.copy(game)
  other.forfeit = forfeit
  return other


@functools.lru_cache(maxsize=64)
def _named_player(name: str, game: core.Game) -> rollout.Agent:
  return experts.make_player(name, game)  # cached: the same function reuses its compiled code


def _agent(spec: Any, game: core.Game, field: str) -> rollout.Agent:
  if isinstance(spec, str):
    if spec in ("random", "expert"):
      return _named_player(spec, game)
    raise ValueError(f"{field}={spec!r}: use 'random', 'expert'"
                     f"{', ' + repr(SELF) if field == 'opponent' else ''}, a scripted player or "
                     "a rollout.TextAgent")
  if isinstance(spec, rollout.TextAgent) or callable(spec):
    return spec
  raise TypeError(f"{field}={spec!r} must be a name, a scripted player or a rollout.TextAgent")


def _name(spec: Any) -> str:
  if isinstance(spec, str):
    return spec
  if isinstance(spec, rollout.TextAgent):
    return spec.name
  name = getattr(spec, "__qualname__", None) or type(spec).__name__
  return name.split(".<locals>")[0]


def _record(games: list[rollout.FinishedGame]) -> Record:
  seat = np.array([g.learner_seats[0] for g in games], np.int64)
  returns = np.stack([g.returns for g in games]) if games else np.zeros((0, 2), np.float32)
  mine = returns[np.arange(len(games)), seat]
  theirs = returns[np.arange(len(games)), 1 - seat]
  forfeited_by = np.array([g.forfeited_by for g in games], np.int64)
  return Record(games=len(games), win=Rate.of(mine > theirs), draw=Rate.of(mine == theirs),
                loss=Rate.of(mine < theirs), agent_forfeit=Rate.of(forfeited_by == seat),
                opponent_forfeit=Rate.of(forfeited_by == 1 - seat), reward=Mean.of(mine),
                moves_per_game=float(np.mean([g.num_moves for g in games])) if games
                else math.nan)


def summarize(game_id: str, agent: str, opponent: str, games: list[rollout.FinishedGame],
              moves: list[rollout.Move] | None) -> ArenaResult:
  """The ``ArenaResult`` of finished games whose ``learner_seats[0]`` is the agent's seat, and of
  the agent's text moves (None for a scripted agent)."""
  if any(len(g.learner_seats) != 1 for g in games):
    raise ValueError("summarize: every game needs exactly one agent seat (learner_seats); "
                     "self-play games have two")
  seats = tuple(_record([g for g in games if g.learner_seats[0] == s])
                for s in range(core.NUM_SEATS))
  text = None
  if moves is not None:
    text = TextStats(
        moves=len(moves),
        response_tokens=float(np.mean([len(m.response_ids) for m in moves])) if moves
        else math.nan,
        response_chars=float(np.mean([len(m.response_text) for m in moves])) if moves
        else math.nan,
        invalid=Rate.of([m.invalid for m in moves]),
        truncated=Rate.of([m.truncated for m in moves]))
  return ArenaResult(game_id, agent, opponent, _record(games), seats, text)


def play_arena(game: core.Game, agent: Any, opponent: Any, *, key: jax.Array | int,
               num_games: int = DEFAULT_NUM_GAMES, games_per_batch: int | None = None,
               forfeit: core.Forfeit | None = core.EVAL_FORFEIT, template: str = "qwen",
               agent_name: str | None = None, opponent_name: str | None = None) -> ArenaResult:
  """Plays ``num_games`` games of ``agent`` against ``opponent``, the agent's seat drawn at random
  per game (see the module docstring). ``games_per_batch`` (default: all) bounds how many games,
  hence sampler rows, run at once; ``template`` is the default of text agents that set none;
  ``forfeit=None`` keeps the game's own forfeit rewards."""
  if num_games < 1:
    raise ValueError(f"num_games={num_games} must be >= 1")
  if games_per_batch is not None and games_per_batch < 1:
    raise ValueError(f"games_per_batch={games_per_batch} must be >= 1 (or None for all at once)")
  if isinstance(agent, str) and agent == SELF:
    raise ValueError(f"agent={SELF!r}: only the opponent can be the agent itself")
  if forfeit is not None:
    game = with_forfeit(game, forfeit)
  learner = _agent(agent, game, "agent")
  rival = learner if isinstance(opponent, str) and opponent == SELF else _agent(
      opponent, game, "opponent")
  runner = rollout.GameRunner(game, opponent=rival, learner=learner)
  key = jax.random.key(key) if isinstance(key, int) else key
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  batch = games_per_batch or num_games
  moves: list[rollout.Move] = []
  finished: list[rollout.FinishedGame] = []
  for start in range(0, num_games, batch):
    m, f = rollout.play_round([runner], [min(batch, num_games - start)], None, None,
                              jax.random.fold_in(key, start), template=template, rng=rng,
                              game_offset=len(finished))
    moves += m
    finished += f
  is_text = isinstance(learner, rollout.TextAgent)
  return summarize(game.id, agent_name or _name(agent), opponent_name or _name(opponent),
                   finished, moves if is_text else None)
