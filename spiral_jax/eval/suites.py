"""The evaluation suites: what the trainer runs every ``eval.every`` steps and what
``python -m spiral_jax.evaluate`` runs on a checkpoint or a Hugging Face model.

  evaluator = Evaluator(cfg)            # games, opponents, benchmark problems: prepared once
  report = evaluator.run(policy, key)   # arena, Kuhn exploitability, reasoning
  report.metrics()                      # flat eval/... names for metrics.jsonl
  report.write(f"{workdir}/eval", "120")  # eval/120.json (every section) and eval/120.md

Suites (each also a function of its own):
* ``arena_suite``: ``eval.games`` games of the policy against each of ``eval.opponents`` in each
  game (the training games plus ``eval.extra_games``), random seats, forfeits scored -1/+1
  (``eval/arena.py``: Wilson intervals, per seat, response lengths).
* ``kuhn_suite``: for single-round Kuhn Poker, the exact exploitability of the policy read from
  scored decisions (``kuhn_exploitability``), and with ``eval.kuhn_samples=K`` also of the policy
  estimated from K sampled responses per information set (parsed by the game; unparseable or
  illegal responses are invalid mass, which loses like a forfeit).
* ``reasoning_suite``: pass@1 on the ``eval.reasoning`` benchmarks (``eval/reasoning.py``, the
  reference's prompt and decoding: temperature 0.6, top-p 0.95).

Metric names: ``eval/<game>/vs_<opponent>/{win_rate, draw_rate, loss_rate, mean_reward,
reward_ci95, agent_forfeit_rate, opponent_forfeit_rate, invalid_rate, truncated_rate,
response_tokens, response_chars}``, ``eval/<game>/exploitability`` and ``off_format_mass`` (scored),
``eval/<game>/exploitability_sampled`` and ``invalid_mass_sampled``, and
``eval/reasoning/<benchmark>/pass@1`` etc. Seat breakdowns and intervals are in the JSON report.

``eval.games_per_batch`` bounds the rows of one sampler call: arena games, sampled Kuhn responses
and reasoning samples. Its default (0) takes the most rows the memory plan fits on the local
devices (``sampler_rows``, ``memory.rows_that_fit``): at most ``eval.games`` arena games, 256 Kuhn
responses and 64 reasoning samples, fewer where a call of that many would not fit.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax

from spiral_jax import memory
from spiral_jax.eval import arena
from spiral_jax.eval.kuhn_policy import (is_single_round_kuhn, kuhn_exploitability,
                                         sampled_kuhn_exploitability)
from spiral_jax.eval.report import EvalReport
from spiral_jax.games import core
from spiral_jax.play import agents
from spiral_jax.rl import batching, sft
from spiral_jax.sampling import prefixes

SCRIPTED_OPPONENTS = ("random", "expert", arena.SELF)
KUHN_ROWS_PER_CALL = 256  # sampled Kuhn responses per sampler call at most (by default)
REASONING_ROWS_PER_CALL = 64  # reasoning samples per sampler call at most (by default)


def sampler_rows(cfg, policy, most: int, new_tokens: int, prompt_tokens: int | None = None,
                 extra_params: int = 0) -> int:
  """Rows of one evaluation sampler call: ``eval.games_per_batch`` when set, else the most (up to
  ``most``) that the memory plan fits on the local devices beside a resident train state and
  ``extra_params`` more weight copies (frozen opponents): never "all at once" unchecked."""
  if cfg.eval.games_per_batch:
    return cfg.eval.games_per_batch
  mesh = dict(policy.mesh.shape) if policy.mesh is not None else None
  prompt = cfg.max_prompt_tokens if prompt_tokens is None else prompt_tokens
  return memory.rows_that_fit(policy.config, mesh, prompt, new_tokens, most,
                              extra_params=extra_params)


def text_agent(cfg, policy, tokenizer=None, name: str = "policy",
               prefix_table: prefixes.PrefixTable | None = None,
               rows: int | None = None) -> agents.TextAgent:
  """The policy as an arena player with the config's evaluation decoding, its sampler padded to
  ``rows`` (default: ``sampler_rows`` of an arena batch); with ``prefix_table``
  (``Evaluator.prefix_table``) its prefill runs the prompts' shared prefixes once, in one
  compiled shape for every turn of every evaluation."""
  rows = rows or arena_rows(cfg, policy)
  return agents.text_agent(policy, tokenizer, **eval_sample_kwargs(cfg, rows),
                           template=cfg.template, max_prompt_tokens=cfg.max_prompt_tokens,
                           name=name, prefix_table=prefix_table)


def arena_rows(cfg, policy, extra_params: int = 0) -> int:
  """Arena games per batch: ``sampler_rows`` of at most ``eval.games`` evaluation turns."""
  return sampler_rows(cfg, policy, cfg.eval.games, cfg.eval.sampling.max_new_tokens,
                      extra_params=extra_params)


def eval_sample_kwargs(cfg, rows: int) -> dict[str, Any]:
  """``agents.policy_sample_fn`` settings of evaluation: its decoding, and calls padded to
  ``rows``, an arena batch (a text opponent's and the policy's turns never hold more)."""
  s = cfg.eval.sampling
  return dict(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
              top_k=s.top_k, batch_rows=rows)


def arena_suite(games: Sequence[core.Game], agent: agents.TextAgent,
                opponents: Sequence[Any], key: jax.Array, *, num_games: int,
                games_per_batch: int | None = None,
                template: str = "qwen") -> dict[str, dict[str, arena.ArenaResult]]:
  """``{game id: {opponent name: ArenaResult}}`` of ``agent`` against each opponent in each game
  (opponents: 'random', 'expert', 'self' or a ``agents.TextAgent``)."""
  results: dict[str, dict[str, arena.ArenaResult]] = {}
  for k, game in enumerate(games):
    for j, opponent in enumerate(opponents):
      result = arena.play_arena(game, agent, opponent, num_games=num_games,
                                games_per_batch=games_per_batch, template=template,
                                key=jax.random.fold_in(jax.random.fold_in(key, k), j))
      results.setdefault(game.id, {})[result.opponent] = result
  return results


def kuhn_suite(games: Sequence[core.Game], policy, tokenizer, agent: agents.TextAgent,
               key: jax.Array, *, samples: int = 0, template: str = "qwen",
               rows_per_call: int = 0) -> dict[str, dict[str, dict]]:
  """``{game id: {"scored": report, "sampled"?: report}}`` for each single-round Kuhn game."""
  out: dict[str, dict[str, dict]] = {}
  for k, game in enumerate(games):
    if not is_single_round_kuhn(game):
      continue
    out[game.id] = {"scored": kuhn_exploitability(game, policy, tokenizer, template)}
    if samples:
      out[game.id]["sampled"] = sampled_kuhn_exploitability(
          game, agent, samples, jax.random.fold_in(key, k), template, rows_per_call)
  return out


def load_problems(cfg) -> dict[str, list[dict[str, Any]]]:
  """The configured benchmarks' problems (built from ``eval.source_dir`` first when set)."""
  if not cfg.eval.reasoning:
    return {}
  from spiral_jax.eval import datasets  # lazy: TFDS is slow to import
  limit = cfg.eval.reasoning_limit or None
  problems = {}
  for name in cfg.eval.reasoning:
    if cfg.eval.source_dir:
      datasets.build(name, cfg.eval.source_dir, cfg.eval.data_dir)
    problems[name] = datasets.load(name, cfg.eval.data_dir, limit)
  return problems


def reasoning_suite(cfg, policy, tokenizer, problems: Mapping[str, Sequence[Mapping[str, Any]]],
                    key: jax.Array) -> dict[str, Any]:
  """``evaluate_reasoning`` on ``problems`` with the config's samples and token budget."""
  from spiral_jax.eval import reasoning  # lazy: pulls in the answer checker (sympy)
  # prompt + budget fit max_seq_len (the budget is clipped to it): plan for a full-length row
  new = min(cfg.eval.reasoning_max_new_tokens, policy.config.max_seq_len)
  rows = sampler_rows(cfg, policy, REASONING_ROWS_PER_CALL, new,
                      prompt_tokens=policy.config.max_seq_len - new)
  return reasoning.evaluate_reasoning(
      policy, tokenizer, problems, num_samples=cfg.eval.reasoning_samples,
      max_new_tokens=cfg.eval.reasoning_max_new_tokens, key=key, template=cfg.template,
      batch_size=rows)


# ---- the evaluator ----
def eval_games(cfg) -> list[core.Game]:
  """The training games, then ``eval.extra_games``, all scoring forfeits -1/+1."""
  from spiral_jax import games as games_lib
  return ([spec.make(core.EVAL_FORFEIT) for spec in cfg.games] +
          [games_lib.make(gid, forfeit=core.EVAL_FORFEIT) for gid in cfg.eval.extra_games])


class Evaluator:
  """The suites a config asks for, prepared once (games, benchmark problems) and run on any policy.

  ``problems`` overrides the configured benchmarks (``{name: [problem, ...]}``).
  """

  def __init__(self, cfg, problems: Mapping[str, Sequence[Mapping[str, Any]]] | None = None):
    self.cfg = cfg
    self.games = eval_games(cfg)
    self.problems = dict(problems) if problems is not None else load_problems(cfg)
    self._folder_opponents: dict[str, agents.TextAgent] = {}
    self._table: tuple[Any, prefixes.PrefixTable | None] | None = None  # (tokenizer, table)

  def prefix_table(self, tokenizer) -> prefixes.PrefixTable | None:
    """The sampler's fixed prefixes and sizes for the evaluation games' prompts (as training
    derives its own: ``sft.random_game_floor``), built once per tokenizer; None when
    ``eval.sampling.share_prefix`` is off."""
    c, s = self.cfg, self.cfg.eval.sampling
    if not s.share_prefix:
      return None
    if self._table is None or self._table[0] is not tokenizer:
      floor = sft.random_game_floor(self.games, tokenizer, c.template, c.max_prompt_tokens,
                                    s.max_new_tokens, c.seed)
      self._table = (tokenizer, batching.prefix_table(floor, s.max_new_tokens))
    return self._table[1]

  def opponents(self, policy) -> list[Any]:
    """The configured opponents; folders (a run's workdir, an HF model) load once, as text agents
    sampling with the evaluation decoding."""
    out = []
    for name in self.cfg.eval.opponents:
      if name in SCRIPTED_OPPONENTS:
        out.append(name)
        continue
      if name not in self._folder_opponents:
        from spiral_jax.play import opponents  # lazy: Orbax and the HF loader
        rows = arena_rows(self.cfg, policy, self.folder_count)
        self._folder_opponents[name] = opponents.frozen(name, policy,
                                                        eval_sample_kwargs(self.cfg, rows))
      out.append(self._folder_opponents[name])
    return out

  def run(self, policy, key: jax.Array, tokenizer=None) -> EvalReport:
    """Every configured suite on ``policy`` (a ``model.Policy``; ``tokenizer`` defaults to its)."""
    c = self.cfg
    tokenizer = tokenizer if tokenizer is not None else policy.tokenizer
    if tokenizer is None:
      raise ValueError("Evaluator.run: the policy has no tokenizer; pass tokenizer=")
    policy = policy if policy.tokenizer is not None else policy.replace(tokenizer=tokenizer)
    rows = arena_rows(c, policy, self.folder_count)  # games at once: what the memory plan fits
    agent = text_agent(c, policy, tokenizer, prefix_table=self.prefix_table(tokenizer), rows=rows)
    results = arena_suite(self.games, agent, self.opponents(policy), jax.random.fold_in(key, 0),
                          num_games=c.eval.games, games_per_batch=rows, template=c.template)
    kuhn_rows = sampler_rows(c, policy, KUHN_ROWS_PER_CALL, c.eval.sampling.max_new_tokens)
    kuhn = kuhn_suite(self.games, policy, tokenizer, agent, jax.random.fold_in(key, 1),
                      samples=c.eval.kuhn_samples, template=c.template, rows_per_call=kuhn_rows)
    reasoning = (reasoning_suite(c, policy, tokenizer, self.problems, jax.random.fold_in(key, 2))
                 if self.problems else None)
    s = c.eval.sampling
    settings = {"num_games": c.eval.games, "opponents": list(c.eval.opponents),
                "games": [g.id for g in self.games], "temperature": s.temperature,
                "top_p": s.top_p, "top_k": s.top_k, "max_new_tokens": s.max_new_tokens,
                "template": c.template, "kuhn_samples": c.eval.kuhn_samples}
    settings["games_per_batch"] = rows
    return EvalReport(results, kuhn, reasoning, settings)

  @property
  def folder_count(self) -> int:
    """Opponents loaded from folders: each keeps one more weight copy on the devices."""
    return sum(name not in SCRIPTED_OPPONENTS for name in self.cfg.eval.opponents)
