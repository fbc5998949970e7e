"""SFT on scripted trajectories: the explanations state facts about the move, and SFT on expert
Kuhn games lowers the held-out NLL and saves a checkpoint that evaluation loads."""
import json
import os
import signal
import sys

import jax
import numpy as np
import pytest

import spiral_jax as sj
from spiral_jax import config as config_lib
from spiral_jax.games import core, experts, simple_negotiation
from spiral_jax.rl import sft
from spiral_jax.run import evaluation as run_evaluation
from spiral_jax.run import sft as sft_run
from spiral_jax.workdir import Workdir
from spiral_jax.text import actions

from tests.run.test_trainer import tiny_config


def _tic_tac_toe_after(moves):
  game = sj.games.make("TicTacToe-v0")
  state = game.init(jax.random.key(0))
  for m in moves:
    state = game.step(state, m)
  return game, state


def test_tic_tac_toe_explanations_name_wins_blocks_and_free_cells():
  # O: 0, 1; X: 4, 8. O to move: cell 2 completes O's top row.
  game, state = _tic_tac_toe_after([0, 4, 1, 8])
  assert sft.response_text(game, 2, state, 0) == (
      "I am O; the free cells are 2, 3, 5, 6, 7. Cell 2 completes my line. \\boxed{[2]}")
  # X to move (O: 0, 1; X: 4): cell 2 blocks O's top row; cell 5 is in no threatened line.
  game, state = _tic_tac_toe_after([0, 4, 1])
  assert sft.explanation(game, state, 1, 2).endswith("Cell 2 blocks O's line.")
  assert sft.explanation(game, state, 1, 5) == "I am X; the free cells are 2, 3, 5, 6, 7, 8."


def test_negotiation_explanations_value_the_trade_for_the_seat():
  game = sj.games.make("SimpleNegotiation-v1")
  state = game.init(jax.random.key(0))
  offer = simple_negotiation.offer_action(3, 0, 0, 4)  # give 3 Wood, get 4 Gold
  text = sft.response_text(game, offer, state, 0)
  assert text.startswith("I value Wood 5 and Gold 15 and hold 10 Wood and 10 Gold.")
  assert "changes my value by +45." in text and text.endswith(
      f"\\boxed{{{game.action_text(offer)}}}")
  pending = game.step(state, offer)
  # Seat 1 values Wood 15, Gold 5: receiving 3 Wood for 4 Gold is worth 45 - 20 = +25 to it.
  assert sft.explanation(game, pending, 1, simple_negotiation.ACCEPT).endswith(
      "Accepting the pending offer changes my value by +25.")
  assert game.parse(sft.response_text(game, simple_negotiation.ACCEPT, pending, 1),
                    pending) == simple_negotiation.ACCEPT


def test_every_scripted_expert_response_parses_to_its_move():
  for gid, kwargs in (("TicTacToe-v0", {}), ("KuhnPoker-v1", {"rounds": 1}),
                      ("SimpleNegotiation-v1", {})):
    game = sj.games.make(gid, **kwargs)
    pairs = sft.scripted_pairs(game, experts.make_player("expert", game), 8, jax.random.key(1))
    assert pairs
    for prompt, response, seat in pairs:
      assert f"You are Player {seat}" in prompt and response.count("\\boxed{") == 1
      move = actions.extract_action(response)  # the explanation never disturbs the move
      assert game.action_from_text(move) != core.INVALID, response
  kuhn = sj.games.make("KuhnPoker-v1", rounds=1)
  state = kuhn.init(jax.random.key(3))
  # Kuhn's explanation is its summary: what the decision-token exploitability scores.
  assert sft.explanation(kuhn, state, int(state.current_seat), 1) == kuhn.summary(
      state, int(state.current_seat))


def _sft_config():
  return tiny_config(num_steps=0, warm_start__steps=4, warm_start__learning_rate=3e-2,
                     sampling=dict(max_new_tokens=24), rl__loss=dict(drgrpo_constant=24.0))


def _train_sft(workdir):
  return sft_run.train_sft(_sft_config(), str(workdir), progress=False, pool_games=256,
                           held_out_games=32, log_every=2)


@pytest.fixture(scope="module")
def unbroken_sft(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sft")
  return (workdir, *_train_sft(workdir))


def test_sft_on_expert_kuhn_lowers_nll_and_saves_a_loadable_checkpoint(unbroken_sft):
  tmp_path, state, metrics = unbroken_sft
  cfg = _sft_config()
  before, after = metrics["sft/heldout_nll_before"], metrics["sft/heldout_nll_after"]
  assert after < 0.7 * before, (before, after)  # held-out expert games, not the training pool
  with open(Workdir(str(tmp_path)).sft_log) as f:
    logged = [json.loads(line) for line in f]
  assert [r["step"] for r in logged] == [0, 2, 4, 4]
  assert logged[-1]["sft/heldout_nll"] == pytest.approx(after)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["0"]
  policy, step = run_evaluation.load_checkpoint_policy(cfg, str(tmp_path))
  assert step == 0
  for a, b in zip(jax.tree.leaves(policy.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The run's saved config round-trips, so `evaluate --workdir` alone finds its settings.
  assert config_lib.load_run(str(tmp_path)) == cfg
  config_before = (tmp_path / "config.json").read_text()
  with pytest.raises(ValueError, match="already holds checkpoints"):
    sft_run.train_sft(cfg, str(tmp_path), progress=False, pool_games=8)
  assert (tmp_path / "config.json").read_text() == config_before  # refused before writing


def test_sigterm_stops_sft_after_the_step_under_way_and_the_rerun_is_exact(tmp_path, monkeypatch,
                                                                           unbroken_sft):
  """SIGTERM while SFT step 3 of 4 builds its batch: the step finishes, the SFT state is saved,
  no step-0 checkpoint is written; the same call again resumes at step 3 and writes the same
  checkpoint, log and metrics as an unbroken run."""
  batches, build = [], sft.sft_batch

  def batch_then_preempt(*args, **kwargs):
    batches.append(sys._getframe(1).f_code.co_name)  # the held-out NLL builds batches too
    if batches.count("warm_start") == 3:
      os.kill(os.getpid(), signal.SIGTERM)
    return build(*args, **kwargs)

  monkeypatch.setattr(sft, "sft_batch", batch_then_preempt)
  state, metrics = _train_sft(tmp_path)
  monkeypatch.undo()
  assert state is None and metrics["warm_start/steps"] == 3 == batches.count("warm_start")
  assert sorted(os.listdir(tmp_path / "warm_start")) == ["3", sft.FLOORS]
  assert not Workdir(str(tmp_path)).checkpoint_steps()
  state, metrics = _train_sft(tmp_path)
  ref_dir, ref_state, ref_metrics = unbroken_sft
  assert metrics == ref_metrics and not os.path.exists(tmp_path / "warm_start")
  for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for name in ("sft.jsonl", "metrics.jsonl"):
    assert (tmp_path / name).read_text() == (ref_dir / name).read_text()


def test_sft_needs_steps():
  with pytest.raises(ValueError, match="warm_start.steps"):
    sft_run.train_sft(tiny_config(warm_start__steps=0), "/nonexistent/never", progress=False)


def test_kuhn_cards_are_one_token_after_a_unique_marker_and_one_piece_with_the_answer_box(tmp_path):
  # A 2-layer policy trained from scratch: the prompt's card follows a marker found nowhere else
  # (found by content), and the answer's card and box are one piece, so the move is predicted from
  # a token that is the card (the README: self-play then learns a card-dependent policy).
  from spiral_jax.eval import kuhn_policy
  from spiral_jax.run import setup
  from spiral_jax.text import tokenizer as tokenizer_lib
  cfg = tiny_config()  # single-round Kuhn Poker
  tok = setup.build_tokenizer(cfg, str(tmp_path))
  box = tok.encode(tokenizer_lib.ANSWER_BOX_TOKEN.replace("\u2581", " "))
  assert len(box) == 1, [tok.decode([i]) for i in box]  # the other games' answers keep it
  marker = tok.encode(" card is: ")
  assert len(marker) == 1, [tok.decode([i]) for i in marker]
  game = sj.games.make("KuhnPoker-v1", rounds=1)
  for key, info in kuhn_policy.kuhn_infosets(game).items():
    card = "JQK"[int(key[0])]
    prompt = tok.encode(info.prompt)
    assert prompt.count(marker[0]) == 1, key
    assert tok.decode([prompt[prompt.index(marker[0]) + 1]]) == card, key
    for move in (0, 1) if not key.endswith("b") else (2, 3):
      ids = tok.encode(sft.response_text(game, move, info.state, info.seat))
      (at,) = [i for i, t in enumerate(ids) if tok.decode([t]).endswith("\\boxed{[")]
      assert tok.decode([ids[at]]) == f" {card} \\boxed{{[", key
      assert tok.decode(ids[at + 1:]) == game.action_text(move)[1:] + "}", key
