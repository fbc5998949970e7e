"""Training compiles during its first evaluation + checkpoint cycle and never after: the learner's
shapes are fixed before the first step and the sampler's rows are padded to a fixed count."""
import copy

import jax
import numpy as np
import pytest

from flax import nnx

from spiral_jax import config as config_lib
from spiral_jax.model import ModelConfig, Policy
from spiral_jax.play import agents, rollout
from spiral_jax.rl import batching
from spiral_jax.run.trainer import Trainer
from spiral_jax.sampling import prefixes, sampler
from tests.sampling.test_sampler import PROBS, VOCAB, Bigram, CharTokenizer
from tests import tiny_config as tiny_config_file

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _population(rng, n=60):
  """Prompts as in SPIRAL: a shared start, a seat token, shared rules, a history of 0-3 moves."""
  start, rules = rng.integers(3, 64, 12).tolist(), rng.integers(3, 64, 30).tolist()
  moves = []
  for i in range(n):
    history = rng.integers(3, 64, 4 * rng.integers(0, 4)).tolist()
    moves.append(rollout.Move(start + [1 + i % 2] + rules + history,
                              rng.integers(3, 64, rng.integers(1, 9)).tolist(), 0, i % 2, 0,
                              False, False))
  return moves


def test_batches_drawn_from_the_floors_prompts_keep_its_shapes():
  rng = np.random.default_rng(0)
  population = _population(rng)
  floor = batching.floor_for(population, response_len=8)
  want = copy.deepcopy(floor)
  for _ in range(30):
    # Any draw, including ones that share more of their prompts than the whole population.
    size = int(rng.choice([2, 8]))
    drawn = [population[i] for i in rng.choice(len(population), size, replace=False)]
    batch = batching.train_batch(drawn, response_len=8, pad_id=0, floor=floor)
    assert floor == want
    assert batch.prefix.shape == (want.groups, want.prefix)
    assert batch.tokens.shape == (size, want.length)
    for i, m in enumerate(drawn):  # every row still holds its whole prompt and response
      g = batch.row_prefix[i]
      prefix = batch.prefix[g][batch.prefix_mask[g]].tolist()
      row = batch.tokens[i][batch.input_mask[i]].tolist()
      assert prefix + row == m.prompt_ids + m.response_ids
      assert batch.loss_mask[i].sum() == len(m.response_ids)


def test_unseen_prompts_extend_the_floor():
  rng = np.random.default_rng(1)
  population = _population(rng)
  floor = batching.floor_for(population, response_len=8)
  before = copy.deepcopy(floor)
  longest = max(population, key=lambda m: len(m.prompt_ids))
  longer = rollout.Move(longest.prompt_ids + [5] * 40, [6], 0, 0, 0, False, False)
  batching.train_batch([longer, population[0]], response_len=8, pad_id=0, floor=floor)
  assert floor.length > before.length and floor.prefixes == before.prefixes
  stranger = rollout.Move([2] * 50, [6], 0, 0, 0, False, False)  # shares no prefix
  batch = batching.train_batch([stranger, population[0]], response_len=8, pad_id=0,
                               floor=floor)
  assert floor.prefixes[:-1] == before.prefixes and floor.prefixes[-1] == [2] * 49
  assert batch.row_prefix[0] == len(before.prefixes)


def test_sampler_rows_padded_to_batch_rows_share_one_program():
  config = ModelConfig(vocab_size=VOCAB, d_model=2, num_layers=1, num_heads=1, num_kv_heads=1,
                       head_dim=2, mlp_dim=2, max_seq_len=64)
  graphdef, params = nnx.split(Bigram(config, np.log(PROBS)))
  policy = Policy(config=config, graphdef=graphdef, params=params, tokenizer=CharTokenizer())
  sample = agents.policy_sample_fn(policy, max_new_tokens=4, batch_rows=12)
  sample([[1, 2]] * 12, 0)
  traces = sampler.trace_counts()
  for n in (1, 5, 11):  # a turn's rows: fewer as games end
    texts, ids, truncated = sample([[3]] * n, n)
    assert len(texts) == len(ids) == len(truncated) == n
  assert sampler.trace_counts() == traces
  sample([[1]] * 13, 0)  # more rows than promised: a power-of-two bucket, not an error
  assert sampler.trace_counts()["prefill"] == traces["prefill"] + 1


def _joined(layout, i):
  """Row i's prompt back from a layout: its group's prefix, then its tail, padding dropped."""
  tail = layout.tokens[i][layout.mask[i]].tolist()
  if layout.prefix is None:
    return tail
  g = layout.row_prefix[i]
  return layout.prefix[g][layout.prefix_mask[g]].tolist() + tail


def test_sampler_prompts_that_fit_the_prefix_table_keep_its_shapes():
  rng = np.random.default_rng(2)
  population = _population(rng)
  floor = batching.floor_for(population, response_len=8)
  table = batching.prefix_table(floor, response_len=8)
  assert table.groups == floor.groups and table.prefix_len == floor.prefix
  assert table.tail_len == floor.length - 8
  prompts = [m.prompt_ids for m in population]
  for _ in range(20):  # any turn's rows, as games end and histories grow
    size = int(rng.choice([1, 3, 8]))
    drawn = [prompts[i] for i in rng.choice(len(prompts), size, replace=False)]
    layout = prefixes.prompt_layout(drawn, 8, 0, table=table)
    assert layout.prefix.shape == (table.groups, table.prefix_len)
    assert layout.tokens.shape == (8, table.tail_len)
    assert [_joined(layout, i) for i in range(size)] == drawn
  longer = prompts[0] + [5] * (table.tail_len + 1)  # a tail the table cannot hold
  assert table.assign([longer]) is None
  layout = prefixes.prompt_layout([longer, prompts[1]], 8, 0, table=table)  # grouped per call
  assert [_joined(layout, i) for i in range(2)] == [longer, prompts[1]]


@pytest.mark.parametrize("share_prefix", [False, True], ids=["whole_prompts", "shared_prefix"])
def test_nothing_compiles_after_the_first_evaluation_and_checkpoint(tmp_path, share_prefix):
  c = tiny_config_file.get_config()
  c.num_steps, c.eval.every, c.checkpoint.every, c.eval.games = 3, 2, 2, 4
  c.sampling = dict(max_new_tokens=4, share_prefix=share_prefix)
  c.eval.sampling.share_prefix = share_prefix  # evaluation samples with its own settings
  trainer = Trainer(config_lib.from_config_dict(c), str(tmp_path), progress=False)
  step_now, compiles, layouts = [0], [], []
  prompt_layout = prefixes.prompt_layout

  def layout_and_record(rows, batch, pad_id, prompt_buckets=None, share_prefix=True,
                        table=None):
    layout = prompt_layout(rows, batch, pad_id, prompt_buckets, share_prefix, table)
    layouts.append((table, layout))
    return layout

  prefixes.prompt_layout = layout_and_record

  def listener(event, _secs, fun_name="?", **_):
    if event == COMPILE_EVENT:
      compiles.append((step_now[0], fun_name))

  collect = trainer.collect

  def collect_and_track(state, *rest):
    step_now[0] = int(state.step) + 1  # everything until the next collect is this step's work
    return collect(state, *rest)

  trainer.collect = collect_and_track
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    trainer.run()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
    prefixes.prompt_layout = prompt_layout
  tabled = [(t, layout) for t, layout in layouts if t is not None]
  assert bool(tabled) == share_prefix  # self-play's calls get the learner floor's table
  for table, layout in tabled:
    assert layout.prefix.shape == (table.groups, table.prefix_len)
    assert layout.tokens.shape[1] == table.tail_len
  assert {s for s, _ in compiles} >= {1}  # the checks below would pass if nothing were seen
  # Steps 1-2 are the warm-up: the first update, evaluation and checkpoint of training arrays;
  # step 3 rolls out, updates, evaluates and checkpoints again.
  assert [(s, name) for s, name in compiles if s > 2] == []
