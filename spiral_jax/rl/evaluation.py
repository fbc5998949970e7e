"""The evaluation suites: what the trainer runs every ``eval_every`` steps and what
``python -m spiral_jax.evaluate`` runs on a checkpoint or a Hugging Face model.

  evaluator = Evaluator(cfg)            # games, opponents, benchmark problems: prepared once
  report = evaluator.run(policy, key)   # arena, Kuhn exploitability, reasoning
  report.metrics()                      # flat eval/... names for metrics.jsonl
  report.write(f"{workdir}/eval", "120")  # eval/120.json (every section) and eval/120.md

Suites (each also a function of its own):
* ``arena_suite``: ``eval_games`` games of the policy against each of ``eval_opponents`` in each
  game (the training games plus ``eval_extra_games``), random seats, forfeits scored -1/+1
  (``eval/arena.py``: Wilson intervals, per seat, response lengths).
* ``kuhn_suite``: for single-round Kuhn Poker, the exact exploitability of the policy read from
  scored decisions (``kuhn_exploitability``), and with ``eval_kuhn_samples=K`` also of the policy
  estimated from K sampled responses per information set (parsed by the game; unparseable or
  illegal responses are invalid mass, which loses like a forfeit).
* ``reasoning_suite``: pass@1 on the ``eval_reasoning`` benchmarks (``eval/reasoning.py``, the
  reference's prompt and decoding: temperature 0.6, top-p 0.95).

Metric names: ``eval/<game>/vs_<opponent>/{win_rate, draw_rate, loss_rate, mean_reward,
reward_ci95, agent_forfeit_rate, opponent_forfeit_rate, invalid_rate, truncated_rate,
response_tokens, response_chars}``, ``eval/<game>/exploitability`` and ``off_format_mass`` (scored),
``eval/<game>/exploitability_sampled`` and ``invalid_mass_sampled``, and
``eval/reasoning/<benchmark>/pass@1`` etc. Seat breakdowns and intervals are in the JSON report.

``eval_games_per_batch`` bounds the rows of one sampler call: arena games (default: all
``eval_games`` at once), sampled Kuhn responses (default 256) and reasoning samples (default 64).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import numpy as np

from spiral_jax.eval import arena, kuhn_exact
from spiral_jax.games import core, kuhn_poker
from spiral_jax.model.policy import left_pad
from spiral_jax.rl import batching, rollout, sft
from spiral_jax.sampling import prefixes
from spiral_jax.text import templates

SCRIPTED_OPPONENTS = ("random", "expert", arena.SELF)
# Arena numbers kept in metrics.jsonl (the JSON report has every seat and interval).
ARENA_METRICS = ("win_rate", "draw_rate", "loss_rate", "mean_reward", "agent_forfeit_rate",
                 "opponent_forfeit_rate", "invalid_rate", "truncated_rate", "response_tokens",
                 "response_chars")
KUHN_ROWS_PER_CALL = 256  # sampled Kuhn responses per sampler call (prefill memory grows with it)
_KUHN_MOVES = {"[check]": "pass", "[fold]": "pass", "[bet]": "bet", "[call]": "bet"}


# ---- Kuhn Poker: information sets, scored and sampled policies ----
class Infoset(NamedTuple):
  state: kuhn_poker.KuhnState  # one state of the set, with the seat to move
  seat: int
  prompt: str


def kuhn_infosets(game: kuhn_poker.KuhnPoker, template: str = "qwen") -> dict[str, Infoset]:
  """The 12 OpenSpiel information sets of single-round Kuhn Poker, keyed by their strings."""
  found: dict[str, Infoset] = {}
  for cards in itertools.permutations(range(3), 2):
    for history in ((), (0,), (1,), (0, 1)):
      state = game.init_with_cards(np.array([cards], np.int32))
      for a in history:
        state = game.step(state, a)
      seat = int(state.current_seat)
      text = templates.spiral_prompt(game.render(state, seat), template)
      info = found.setdefault(game.info_state(state, seat), Infoset(state, seat, text))
      if info.prompt != text:
        raise AssertionError(f"two prompts for information set {game.info_state(state, seat)!r}: "
                             "the render leaks state")
  return found


def kuhn_prompts(game: kuhn_poker.KuhnPoker, template: str = "qwen") -> dict[str, str]:
  """The prompt of each of the 12 OpenSpiel information sets of single-round Kuhn Poker."""
  return {key: info.prompt for key, info in kuhn_infosets(game, template).items()}


def make_score_fn(policy, tokenizer, end_of_turn: bool = True):
  """``score_fn(prompts, responses) -> f[n]``: the total log-prob of each response given its
  prompt (with the end-of-turn token after it when ``end_of_turn``)."""

  def score(prompts: list[str], responses: list[str]) -> np.ndarray:
    lengths, rows = [], []
    for p, r in zip(prompts, responses):
      response = tokenizer.encode(r) + ([tokenizer.eos_id] if end_of_turn else [])
      rows.append(tokenizer.encode(p) + response)
      lengths.append(len(response))
    tokens, mask = left_pad(rows, tokenizer.pad_id)  # responses end every row
    lp = np.asarray(policy.token_logprobs(tokens, mask))
    return np.array([lp[i, lp.shape[1] - n:].sum() for i, n in enumerate(lengths)])

  return score


def kuhn_exploitability(game, policy, tokenizer, template: str = "qwen",
                        whole_response: bool = False) -> dict:
  """The exact exploitability of the policy in single-round Kuhn Poker (``eval/kuhn_exact``).

  The policy's move at each of the 12 information sets is read from the log-probs of the scripted
  answer up to the move word (``The opponent bet; I have J \\boxed{[call``, see
  ``sft.response_text``) for each legal move, normalised: the decision itself, given the format
  the warm-start taught, whatever the model writes after the move word (a response that goes on to
  close the box parses to that move). ``invalid_mass_mean`` reports the mass outside those
  answers. ``whole_response=True`` scores the complete responses + end of turn instead.
  """
  responses = {}
  infosets = kuhn_infosets(game, template)
  for s, info in infosets.items():
    texts = [sft.response_text(game, game.action_from_text(m), info.state, info.seat)
             for m in kuhn_exact.MOVE_NAMES[s]]
    responses[s] = tuple(t if whole_response else t[:-len("]}")] for t in texts)
  estimate = kuhn_exact.distributions_from_scores(
      make_score_fn(policy, tokenizer, end_of_turn=whole_response),
      {s: info.prompt for s, info in infosets.items()}, responses)
  return kuhn_exact.report(estimate.policy, estimate.invalid_mass)


def sampled_kuhn_exploitability(game: kuhn_poker.KuhnPoker, agent: rollout.TextAgent, k: int,
                                key: jax.Array, template: str = "qwen",
                                rows_per_call: int = 0) -> dict:
  """The exploitability of the policy estimated from ``k`` sampled responses per information set.

  Each response is parsed by the game (``Game.parse``): check/fold count as pass, bet/call as bet,
  anything else is invalid mass, which the exploitability counts as a forfeit (-1 chip).
  ``rows_per_call`` bounds the sampler batch (0: all 12 k responses in one call).
  """
  infosets = kuhn_infosets(game, agent.template or template)
  tokenizer = agent.tokenizer

  def sample(prompts: list[str], n: int) -> list[list[str]]:
    rows = [ids for ids in tokenizer.encode_batch(prompts) for _ in range(n)]
    step = rows_per_call or len(rows)
    texts: list[str] = []
    for i, start in enumerate(range(0, len(rows), step)):
      seed = int(jax.random.randint(jax.random.fold_in(key, i), (), 0, 2**31 - 1))
      texts += list(agent.sample_fn(rows[start:start + step], seed)[0])
    return [texts[p * n:(p + 1) * n] for p in range(len(prompts))]

  def parse(info_state: str, text: str) -> str | None:
    action = game.parse(text, infosets[info_state].state)
    return None if action == core.INVALID else _KUHN_MOVES[game.action_text(action)]

  estimate = kuhn_exact.distributions_from_samples(
      sample, {s: info.prompt for s, info in infosets.items()}, parse, k)
  result = kuhn_exact.report(estimate.policy)
  result["samples_per_info_state"] = int(k)
  return result


def is_single_round_kuhn(game: core.Game) -> bool:
  return isinstance(game, kuhn_poker.KuhnPoker) and game.rounds == 1


# ---- the suites ----
def text_agent(cfg, policy, tokenizer=None, name: str = "policy",
               prefix_table: prefixes.PrefixTable | None = None) -> rollout.TextAgent:
  """The policy as an arena player with the config's evaluation decoding, its sampler padded to
  the rows of an arena batch; with ``prefix_table`` (``Evaluator.prefix_table``) its prefill runs
  the prompts' shared prefixes once, in one compiled shape for every turn of every evaluation."""
  tokenizer = tokenizer if tokenizer is not None else policy.tokenizer
  if tokenizer is None:
    raise ValueError("text_agent: the policy has no tokenizer; pass tokenizer=")
  if policy.tokenizer is None:
    policy = policy.replace(tokenizer=tokenizer)
  sample_fn = rollout.policy_sample_fn(policy, **eval_sample_kwargs(cfg),
                                       share_prefix=prefix_table is not None,
                                       prefix_table=prefix_table)
  return rollout.TextAgent(sample_fn, tokenizer, cfg.template, cfg.max_prompt_tokens, name)


def eval_sample_kwargs(cfg) -> dict[str, Any]:
  """``rollout.policy_sample_fn`` settings of evaluation: its decoding, and rows padded to an
  arena batch (a text opponent's and the policy's turns never hold more)."""
  s = cfg.sampling
  return dict(max_new_tokens=s.max_new_tokens, temperature=cfg.eval_temperature,
              top_p=cfg.eval_top_p, top_k=s.top_k,
              batch_rows=cfg.eval_games_per_batch or cfg.eval_games)


def arena_suite(games: Sequence[core.Game], agent: rollout.TextAgent,
                opponents: Sequence[Any], key: jax.Array, *, num_games: int,
                games_per_batch: int | None = None,
                template: str = "qwen") -> dict[str, dict[str, arena.ArenaResult]]:
  """``{game id: {opponent name: ArenaResult}}`` of ``agent`` against each opponent in each game
  (opponents: 'random', 'expert', 'self' or a ``rollout.TextAgent``)."""
  results: dict[str, dict[str, arena.ArenaResult]] = {}
  for k, game in enumerate(games):
    for j, opponent in enumerate(opponents):
      result = arena.play_arena(game, agent, opponent, num_games=num_games,
                                games_per_batch=games_per_batch, template=template,
                                key=jax.random.fold_in(jax.random.fold_in(key, k), j))
      results.setdefault(game.id, {})[result.opponent] = result
  return results


def kuhn_suite(games: Sequence[core.Game], policy, tokenizer, agent: rollout.TextAgent,
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
  """The configured benchmarks' problems (built from ``eval_source_dir`` first when set)."""
  if not cfg.eval_reasoning:
    return {}
  from spiral_jax.eval import datasets  # lazy: TFDS is slow to import
  limit = cfg.eval_reasoning_limit or None
  problems = {}
  for name in cfg.eval_reasoning:
    if cfg.eval_source_dir:
      datasets.build(name, cfg.eval_source_dir, cfg.eval_data_dir)
    problems[name] = datasets.load(name, cfg.eval_data_dir, limit)
  return problems


def reasoning_suite(cfg, policy, tokenizer, problems: Mapping[str, Sequence[Mapping[str, Any]]],
                    key: jax.Array) -> dict[str, Any]:
  """``evaluate_reasoning`` on ``problems`` with the config's samples and token budget."""
  from spiral_jax.eval import reasoning  # lazy: pulls in the answer checker (sympy)
  return reasoning.evaluate_reasoning(
      policy, tokenizer, problems, num_samples=cfg.eval_reasoning_samples,
      max_new_tokens=cfg.eval_reasoning_max_new_tokens, key=key, template=cfg.template,
      batch_size=cfg.eval_games_per_batch or 64)


# ---- the report ----
@dataclasses.dataclass
class EvalReport:
  """Every section of one evaluation; ``reasoning`` is None when no benchmark is configured."""
  arena: dict[str, dict[str, arena.ArenaResult]]
  kuhn: dict[str, dict[str, dict]]
  reasoning: dict[str, Any] | None
  settings: dict[str, Any]

  def metrics(self) -> dict[str, float]:
    """Flat ``eval/...`` numbers for metrics.jsonl (see the module docstring)."""
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
    return _jsonable({
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
        "No benchmark configured (set eval_reasoning and eval_data_dir).", ""]
    return "\n".join(lines)

  def write(self, folder: str, name: str, title: str | None = None,
            **header: Any) -> tuple[str, str]:
    """Writes ``folder/name.json`` and ``folder/name.md``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    json_path, md_path = os.path.join(folder, f"{name}.json"), os.path.join(folder, f"{name}.md")
    _atomic_write(json_path, json.dumps(self.to_json(**header), indent=1, allow_nan=False) + "\n")
    _atomic_write(md_path, self.to_markdown(title or f"Evaluation {name}"))
    return json_path, md_path


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
           "| benchmark | pass@1 | boxed | response tokens | problems x samples |",
           "| --- | ---: | ---: | ---: | ---: |"]
  for name, b in result["benchmarks"].items():
    tokens = b.get("mean_response_tokens", math.nan)
    lines.append(f"| {name} | {b['pass@1']:.3f} | {b['boxed_rate']:.3f} | {tokens:.1f} | "
                 f"{b['num_problems']} x {b['num_samples']} |")
  lines += [f"| **average** | **{result['average_pass@1']:.3f}** | | | |", ""]
  return lines


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.generic, np.ndarray)):
    return _jsonable(x.tolist())
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def _atomic_write(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


# ---- the evaluator ----
def eval_games(cfg) -> list[core.Game]:
  """The training games, then ``eval_extra_games``, all scoring forfeits -1/+1."""
  from spiral_jax import games as games_lib
  return ([spec.make(core.EVAL_FORFEIT) for spec in cfg.games] +
          [games_lib.make(gid, forfeit=core.EVAL_FORFEIT) for gid in cfg.eval_extra_games])


class Evaluator:
  """The suites a config asks for, prepared once (games, benchmark problems) and run on any policy.

  ``problems`` overrides the configured benchmarks (``{name: [problem, ...]}``).
  """

  def __init__(self, cfg, problems: Mapping[str, Sequence[Mapping[str, Any]]] | None = None):
    self.cfg = cfg
    self.games = eval_games(cfg)
    self.problems = dict(problems) if problems is not None else load_problems(cfg)
    self._folder_opponents: dict[str, rollout.TextAgent] = {}
    self._table: tuple[Any, prefixes.PrefixTable | None] | None = None  # (tokenizer, table)

  def prefix_table(self, tokenizer) -> prefixes.PrefixTable | None:
    """The sampler's fixed prefixes and sizes for the evaluation games' prompts (as training
    derives its own: ``sft.random_game_floor``), built once per tokenizer; None when
    ``sampling.share_prefix`` is off."""
    c = self.cfg
    if not c.sampling.share_prefix:
      return None
    if self._table is None or self._table[0] is not tokenizer:
      floor = sft.random_game_floor(self.games, tokenizer, c.template, c.max_prompt_tokens,
                                    c.sampling.max_new_tokens, c.seed)
      self._table = (tokenizer, batching.prefix_table(floor, c.sampling.max_new_tokens))
    return self._table[1]

  def opponents(self, policy) -> list[Any]:
    """The configured opponents; folders (a run's workdir, an HF model) load once, as text agents
    sampling with the evaluation decoding."""
    out = []
    for name in self.cfg.eval_opponents:
      if name in SCRIPTED_OPPONENTS:
        out.append(name)
        continue
      if name not in self._folder_opponents:
        from spiral_jax.rl import opponents  # lazy: Orbax and the HF loader
        self._folder_opponents[name] = opponents.frozen(name, policy,
                                                        eval_sample_kwargs(self.cfg))
      out.append(self._folder_opponents[name])
    return out

  def run(self, policy, key: jax.Array, tokenizer=None) -> EvalReport:
    """Every configured suite on ``policy`` (a ``model.Policy``; ``tokenizer`` defaults to its)."""
    c = self.cfg
    tokenizer = tokenizer if tokenizer is not None else policy.tokenizer
    if tokenizer is None:
      raise ValueError("Evaluator.run: the policy has no tokenizer; pass tokenizer=")
    policy = policy if policy.tokenizer is not None else policy.replace(tokenizer=tokenizer)
    agent = text_agent(c, policy, tokenizer, prefix_table=self.prefix_table(tokenizer))
    per_batch = c.eval_games_per_batch or None
    results = arena_suite(self.games, agent, self.opponents(policy), jax.random.fold_in(key, 0),
                          num_games=c.eval_games, games_per_batch=per_batch, template=c.template)
    kuhn = kuhn_suite(self.games, policy, tokenizer, agent, jax.random.fold_in(key, 1),
                      samples=c.eval_kuhn_samples, template=c.template,
                      rows_per_call=c.eval_games_per_batch or KUHN_ROWS_PER_CALL)
    reasoning = (reasoning_suite(c, policy, tokenizer, self.problems, jax.random.fold_in(key, 2))
                 if self.problems else None)
    settings = {"num_games": c.eval_games, "opponents": list(c.eval_opponents),
                "games": [g.id for g in self.games], "temperature": c.eval_temperature,
                "top_p": c.eval_top_p, "top_k": c.sampling.top_k,
                "max_new_tokens": c.sampling.max_new_tokens, "template": c.template,
                "kuhn_samples": c.eval_kuhn_samples}
    return EvalReport(results, kuhn, reasoning, settings)
