"""KuhnPoker-v1: multi-round Kuhn Poker with correct chips, the reference's text, Nash experts.

Rules (SPIRAL.md sections 4 and 6). The deck is J < Q < K (cards 0, 1, 2). Each of ``rounds``
rounds (default 5) both seats ante 1 chip and get one distinct card; every round's cards are dealt
by ``init`` from its key, so the state needs no key. Actions, ids 0..3: ``[check]``, ``[bet]``,
``[fold]``, ``[call]``. The opening seat checks or bets; after a check the other seat checks (a
showdown) or bets; facing a bet a seat folds or calls. A bet or a call puts 1 chip in the pot and
the round's winner (the higher card at a showdown, else the seat that did not fold) takes the pot.
Seat 1 opens round 1 and the opener alternates (seat ``(r + 1) % 2`` opens round index ``r``).
After the last round the chip leader wins the match (+1/-1) and a chip tie draws (0/0); with
``rounds=1`` the rewards are the chips won and lost (the classic game: +-1 or +-2, whose first
mover's equilibrium value is -1/18). Illegal moves forfeit through ``core.Game.step``.

Seats and OpenSpiel. OpenSpiel's ``kuhn_poker`` player 0 always acts first. Here seat 1 opens
round 1, so in the single-round game OpenSpiel player ``p`` is our seat ``1 - p``
(``openspiel_player``). ``info_state`` writes OpenSpiel's information-state strings: the card digit
then the round's history with ``p`` for check/fold and ``b`` for bet/call (``"0"``, ``"1pb"``,
``"2b"``).

``render(state, seat)`` reproduces the reference run's observation byte for byte: spiral-rl 0.2.0's
own ``spiral/core/envs/KuhnPoker/env.py`` (registered as KuhnPoker-v1, ante 1, 5 rounds) on
TextArena 0.6.4, behind TextArena's ``LLMObservationWrapper`` (``spiral.core.envs.make_env(id,
True)``): every message sent to the seat so far, each as ``"\\n[GAME] ..."`` or ``"\\n[Player k]
..."``: the rules prompt (its trailing blank line included), each round's "Starting round r out of
R rounds." with "Your card is: K" on the next line (and, for the opener, its available actions;
the other seat's message ends in a newline), each move as ``[Player k] [bet]``, the available
actions the next seat gets, "Player k has folded." or the "Cards: Player 0 had ..." and
"Showdown: ..." lines, and after the last round the reference's game-over line ("Player k won the
game. Reason: ..."). ``tests/reference/test_kuhn_observations.py`` compares every observation of
both seats, at every move and at the end, with the reference's. What it deliberately does not
reproduce (SPIRAL.md section 6):
- Chips move: a bet or a call adds 1 chip to the pot, so a called bet's showdown reads "wins pot of
  4 chips" where the reference's pot is always 2 (its bets and calls move nothing).
- The match goes to the chip leader of the correct count ("Player k won the game. Reason: Player k
  won by having more chips at the end of all 5 rounds."), and a chip tie draws in the reference
  env's own draw words ("The game ended in a draw. Reason: At the end of 5 rounds, both players
  had the same number of chips."), a path the reference never reaches: it gives the match to the
  winner of the last round. ``rounds=1`` pays chips (+-1 or +-2) where the reference pays +-1.
- An illegal move ends the game with the configured ``Forfeit`` rewards (the reference env's are
  -1/0); its text is the reference env's with an error allowance of 0: ``[Player k] <move>`` then
  "Player k lost the game by way of invalid move. Reason: ...". An unparseable move (INVALID) is
  shown as spiral-rl's ``INVALID_ACTION`` placeholder, the string its evaluator plays then; a
  rejected one keeps its canonical text. (In the reference's training the env is not stepped on
  an invalid move, so no one sees this text there.)
- Moves are the exact canonical strings (``parse`` follows SPIRAL's rules); the reference env's
  regex also accepts any capitalisation anywhere in the text.
The reference deals with Python's global ``random`` (one in-place shuffle of its deck a round,
the first two cards to seats 0 and 1); ``init_with_cards`` replays such a deal. Its text depends
on nothing our state lacks: its next round is dealt when an observation is asked for, and it
deals none after the last round.
"""
from __future__ import annotations

import itertools
import numbers
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spiral_jax.games import core, registry
# the Nash family and tables keyed by OpenSpiel information states (re-exported here)
from spiral_jax.games.kuhn_strategy import (NUM_CARDS, ROUND_HISTORIES, bet_probabilities,  # noqa: F401
                                           equilibrium_table)

CHECK, BET, FOLD, CALL = 0, 1, 2, 3
ACTION_TEXTS = ("[check]", "[bet]", "[fold]", "[call]")
RANKS = ("J", "Q", "K")
ANTE = 1
MOVES_PER_ROUND = 3  # check, bet, fold/call at most
INVALID_TEXT = "[\uff5cINVALID_ACTION\uff5c]"  # spiral.tinker.renderer.INVALID_ACTION
GAME = "GAME"  # the sender name of game messages
DEALS = np.array(list(itertools.permutations(range(NUM_CARDS), 2)), np.int32)  # (seat 0, seat 1)
# The four betting histories a seat can face within a round, in OpenSpiel's letters.
OPENSPIEL_LETTERS = ("p", "b", "p", "b")  # by action id: check/fold pass, bet/call bet


@struct.dataclass
class KuhnState(core.State):
  """The match so far, with R = ``rounds``.

  cards:           i32[R, 2] each seat's card in each round (0=J, 1=Q, 2=K)
  round:           i32[]     the current round index, 0-based; R once the match is over
  chips:           i32[2]    each seat's net chips; its antes and bets in the pot already taken off
  pot:             i32[]     chips in the current round's pot (0 once the match is over)
  round_moves:     i32[R, 3] each round's action ids in order, INVALID-padded
  num_round_moves: i32[]     moves made in the current round
  round_winner:    i32[R]    the seat that took each round's pot, NO_SEAT until decided
  round_pot:       i32[R]    the pot each round's winner took
  round_chips:     i32[R, 2] both seats' net chips right after each round (its score line)
  """
  cards: jax.Array
  round: jax.Array
  chips: jax.Array
  pot: jax.Array
  round_moves: jax.Array
  num_round_moves: jax.Array
  round_winner: jax.Array
  round_pot: jax.Array
  round_chips: jax.Array


def opening_seat(round_index: int | jax.Array) -> int | jax.Array:
  """The seat that opens round ``round_index`` (0-based): seat 1 first, then alternating."""
  return (round_index + 1) % 2


def openspiel_player(seat: int) -> int:
  """OpenSpiel's ``kuhn_poker`` player for our ``seat`` in the single-round game (1 - seat)."""
  if seat not in (0, 1):
    raise ValueError(f"seat={seat!r} is not a seat; use 0 or 1")
  return 1 - seat


class KuhnPoker(core.Game):
  """``KuhnPoker(forfeit=core.TRAIN_FORFEIT, rounds=5)``; ``rounds=1`` is the classic game."""

  id = "KuhnPoker-v1"
  num_actions = 4
  # For a small model trained from scratch (the README): the prompt's card follows a unique
  # marker (" card is: ", so "K" is a token of its own, found by content), and an answer's card
  # is one piece with the box opening the move ("I have K \boxed{["): the move is read from it.
  tokenizer_pieces = (("\u2581card\u2581is:\u2581",)
                      + tuple(f"\u2581{r}\u2581\\boxed{{[" for r in RANKS))

  def __init__(self, forfeit: core.Forfeit = core.TRAIN_FORFEIT, rounds: int = 5):
    super().__init__(forfeit)
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
      raise ValueError(f"rounds={rounds!r} must be a positive integer (1 gives the classic "
                       "single-round game, 5 the reference's match)")
    self.rounds = int(rounds)
    self.max_moves = MOVES_PER_ROUND * self.rounds

  # ---- rules (pure, traceable) ----
  def init(self, key: jax.Array) -> KuhnState:
    """A new match; ``key`` deals two distinct cards for every round."""
    deal = jax.random.randint(key, (self.rounds,), 0, len(DEALS))  # cheaper than permutations
    return self.init_with_cards(jnp.asarray(DEALS)[deal])

  def init_with_cards(self, cards: jax.Array | np.ndarray | list) -> KuhnState:
    """A new match with fixed cards i32[rounds, 2] (``cards[r, seat]``), e.g. TextArena's deal."""
    cards = jnp.asarray(cards)
    if cards.shape != (self.rounds, 2):
      raise ValueError(f"cards has shape {cards.shape}; this game needs i32[{self.rounds}, 2]: "
                       "one card per seat per round (or make the game with rounds=len(cards))")
    try:
      values = np.asarray(cards)
    except jax.errors.TracerArrayConversionError:
      values = None  # traced: only concrete cards can be checked
    if values is not None and (((values < 0) | (values >= NUM_CARDS)).any() or
                               (values[:, 0] == values[:, 1]).any()):
      raise ValueError(f"cards={values.tolist()} must hold two distinct cards in 0..2 "
                       "(J, Q, K) in every round")
    rounds = self.rounds
    return KuhnState(
        cards=cards.astype(jnp.int32),
        round=jnp.asarray(0, jnp.int32),
        chips=jnp.full((core.NUM_SEATS,), -ANTE, jnp.int32),
        pot=jnp.asarray(2 * ANTE, jnp.int32),
        round_moves=jnp.full((rounds, MOVES_PER_ROUND), core.INVALID, jnp.int32),
        num_round_moves=jnp.asarray(0, jnp.int32),
        round_winner=jnp.full((rounds,), core.NO_SEAT, jnp.int32),
        round_pot=jnp.zeros((rounds,), jnp.int32),
        round_chips=jnp.zeros((rounds, core.NUM_SEATS), jnp.int32),
        **core.base_fields(self.max_moves, first_seat=opening_seat(0)))

  def _round_index(self, state: KuhnState) -> jax.Array:
    return jnp.minimum(state.round, self.rounds - 1)  # stays in bounds once the match is over

  def _last_round_move(self, state: KuhnState) -> jax.Array:
    """i32[]: the current round's latest action id, INVALID before its first move."""
    last = state.round_moves[self._round_index(state), jnp.maximum(state.num_round_moves - 1, 0)]
    return jnp.where(state.num_round_moves > 0, last, core.INVALID)

  def legal_action_mask(self, state: KuhnState) -> jax.Array:
    """bool[4]: check/bet with no bet on the table, fold/call facing one; nothing once over."""
    facing_bet = self._last_round_move(state) == BET
    actions = jnp.arange(self.num_actions)
    return jnp.where(facing_bet, actions >= FOLD, actions < FOLD) & ~state.terminated

  def _apply(self, state: KuhnState, action: jax.Array) -> KuhnState:
    seat = state.current_seat
    r = self._round_index(state)
    chip_in = ((action == BET) | (action == CALL)).astype(jnp.int32)
    chips = state.chips.at[seat].add(-chip_in)
    pot = state.pot + chip_in
    showdown = (action == CALL) | ((action == CHECK) & (self._last_round_move(state) == CHECK))
    round_over = showdown | (action == FOLD)
    played = state.replace(
        chips=chips, pot=pot, current_seat=1 - seat,
        round_moves=state.round_moves.at[r, state.num_round_moves].set(action),
        num_round_moves=state.num_round_moves + 1)
    high_card_seat = jnp.argmax(state.cards[r]).astype(jnp.int32)
    winner = jnp.where(action == FOLD, 1 - seat, high_card_seat)
    return core.tree_select(round_over, self._end_round(played, r, winner), played)

  def _end_round(self, state: KuhnState, r: jax.Array, winner: jax.Array) -> KuhnState:
    """The winner takes the pot; then the next round's antes, or the match's rewards."""
    chips = state.chips.at[winner].add(state.pot)
    next_round = state.round + 1
    over = next_round >= self.rounds
    if self.rounds == 1:
      rewards = chips.astype(jnp.float32)  # the classic game pays chips
    else:
      rewards = jnp.sign(chips - chips[::-1]).astype(jnp.float32)  # +1 / -1, a tie 0 / 0
    return state.replace(
        round_winner=state.round_winner.at[r].set(winner),
        round_pot=state.round_pot.at[r].set(state.pot),
        round_chips=state.round_chips.at[r].set(chips),
        round=next_round,
        chips=jnp.where(over, chips, chips - ANTE),
        pot=jnp.where(over, 0, 2 * ANTE).astype(jnp.int32),
        num_round_moves=jnp.asarray(0, jnp.int32),
        # As in TextArena, the next opener is to move (after the match too).
        current_seat=jnp.asarray(opening_seat(next_round), jnp.int32),
        terminated=over,
        rewards=jnp.where(over, rewards, 0.0).astype(jnp.float32))

  # ---- text (host) ----
  def action_text(self, action: int) -> str:
    """``'[check]'``, ``'[bet]'``, ``'[fold]'`` or ``'[call]'`` for ids 0..3."""
    if not 0 <= int(action) < self.num_actions:
      raise ValueError(f"action={action} is not a Kuhn Poker action; use an id in 0..3 "
                       f"({', '.join(ACTION_TEXTS)})")
    return ACTION_TEXTS[int(action)]

  def render(self, state: KuhnState, seat: int) -> str:
    """The full observation text for ``seat`` of one unbatched state: the reference's messages
    to that seat so far, as its ``LLMObservationWrapper`` joins them (``"\\n[GAME] ..."``)."""
    s = _one_state(state, seat, "render")
    messages = [(GAME, _prompt(seat, self.rounds))]
    for r in range(min(int(s.round), self.rounds - 1) + 1):
      messages += _round_messages(s, r, seat, self.rounds)
    if int(s.forfeited_by) != core.NO_SEAT:
      messages += _forfeit_messages(s, self.max_moves)
    elif bool(s.terminated):
      messages.append((GAME, _match_result(s, self.rounds)))
    return "".join(f"\n[{sender}] {message}" for sender, message in messages)

  def summary(self, state: KuhnState, seat: int) -> str:
    """``"I have J"``, ``"The opponent checked; I have Q"``, ``"The opponent bet; I have K"``: the
    opponent's last move this round, if any, then the seat's card, last, so that in a scripted
    response (``I have K \\boxed{[bet]}``) the card is the token right before the move."""
    s = _host(state)
    r = min(int(s.round), self.rounds - 1)
    line = f"I have {RANKS[int(s.cards[r, seat])]}"
    moves = [int(a) for a in s.round_moves[r] if a != core.INVALID]
    if moves:
      line = f"The opponent {'bet' if moves[-1] == BET else 'checked'}; {line}"
    return line

  def expert(self, **kwargs) -> core.Player:
    """A Nash equilibrium player (``alpha=`` picks one of the family)."""
    return equilibrium_player(self, **kwargs)

  def info_state(self, state: KuhnState, seat: int) -> str:
    """OpenSpiel's ``kuhn_poker`` information-state string of ``seat`` (single-round games).

    The seat's card digit, then the history in ``p`` (check/fold) and ``b`` (bet/call), e.g.
    ``"0"``, ``"0pb"``, ``"2b"``. The string is OpenSpiel's for ``openspiel_player(seat)``.
    """
    if self.rounds != 1:
      raise ValueError(f"info_state needs the single-round game (rounds=1), not rounds="
                       f"{self.rounds}; make it with make('KuhnPoker-v1', rounds=1)")
    s = _one_state(state, seat, "info_state")
    moves = [int(a) for a in s.round_moves[0] if a != core.INVALID]
    return str(int(s.cards[0, seat])) + "".join(OPENSPIEL_LETTERS[a] for a in moves)

  def __repr__(self) -> str:
    return f"{type(self).__name__}(id={self.id!r}, rounds={self.rounds}, forfeit={self.forfeit})"


def _host(state: KuhnState) -> KuhnState:
  return jax.tree.map(np.asarray, state)


def _one_state(state: KuhnState, seat: int, what: str) -> KuhnState:
  """``state`` on the host, checked to be one unbatched state, with a real ``seat``."""
  if seat not in (0, 1):
    raise ValueError(f"seat={seat!r} is not a seat; use 0 or 1")
  s = _host(state)
  if s.cards.ndim != 2:
    raise ValueError(f"state.cards has shape {s.cards.shape}: {what} takes one unbatched state; "
                     "slice a batch with jax.tree.map(lambda x: x[i], state)")
  return s


def _prompt(seat: int, rounds: int) -> str:
  """The reference env's ``_generate_player_prompt`` (its trailing blank line included)."""
  return (f"You are Player {seat} in a {rounds} round game of Kuhn Poker.\n"
          "Game Rules:\n"
          "- Kuhn Poker uses a 3-card deck with J, Q, K (J lowest, K highest)\n"
          f"- Each player antes {ANTE} chip and receives 1 card each round\n"
          f"- Game continues for {rounds} rounds\n"
          "- The player with the most chips after all rounds wins\n\n"
          "Action Rules:\n"
          "- '[check]': Pass without betting (only if no bet is on the table)\n"
          "- '[bet]': Add 1 chip to the pot (only if no bet is on the table)\n"
          "- '[call]': Match an opponent's bet by adding 1 chip to the pot\n"
          "- '[fold]': Surrender your hand and let your opponent win the pot\n\n")


def _legal_texts(facing_bet: bool) -> str:
  """``"[check], [bet]"`` or ``"[fold], [call]"``: the reference's legal-action-tree keys."""
  actions = (ACTION_TEXTS[FOLD], ACTION_TEXTS[CALL]) if facing_bet else ACTION_TEXTS[:2]
  return ", ".join(actions)


def _available(facing_bet: bool) -> str:
  return f"Your available actions are: {_legal_texts(facing_bet)}"


def _round_messages(s: KuhnState, r: int, seat: int, rounds: int) -> list[tuple[str, str]]:
  """The (sender, message) pairs ``seat`` receives in round index ``r`` of host state ``s``."""
  opener = opening_seat(r)
  start = (f"Starting round {r + 1} out of {rounds} rounds.\n"
           f"Your card is: {RANKS[int(s.cards[r, seat])]}\n")
  messages = [(GAME, start + (_available(facing_bet=False) if seat == opener else ""))]
  moves = [int(a) for a in s.round_moves[r] if a != core.INVALID]
  decided = int(s.round_winner[r]) != core.NO_SEAT
  for index, action in enumerate(moves):
    mover = opener if index % 2 == 0 else 1 - opener
    messages.append((f"Player {mover}", ACTION_TEXTS[action]))
    if seat == 1 - mover and not (decided and index == len(moves) - 1):
      messages.append((GAME, _available(facing_bet=action == BET)))
  if decided:
    if moves[-1] == FOLD:
      folder = opener if (len(moves) - 1) % 2 == 0 else 1 - opener
      messages.append((GAME, f"Player {folder} has folded."))
    else:
      card = [RANKS[int(c)] for c in s.cards[r]]
      winner = int(s.round_winner[r])
      messages += [
          (GAME, f"Cards: Player 0 had {card[0]}, Player 1 had {card[1]}"),
          (GAME, f"Showdown: Player {winner}'s {card[winner]} beats Player {1 - winner}'s "
                 f"{card[1 - winner]}. Player {winner} wins pot of {int(s.round_pot[r])} chips.")]
  return messages


def _match_result(s: KuhnState, rounds: int) -> str:
  """The reference's game-over line, for the chip leader (ours) or a chip tie."""
  chips = [int(c) for c in s.chips]
  if chips[0] == chips[1]:
    return (f"The game ended in a draw. Reason: At the end of {rounds} rounds, both players had "
            "the same number of chips.")
  winner = int(chips[1] > chips[0])
  return (f"Player {winner} won the game. Reason: Player {winner} won by having more chips at "
          f"the end of all {rounds} rounds.")


def _forfeit_messages(s: KuhnState, max_moves: int) -> list[tuple[str, str]]:
  """The forfeiting move and the reference env's invalid-move verdict (error allowance 0)."""
  seat = int(s.forfeited_by)
  move = int(s.history[min(int(s.num_moves), max_moves) - 1])
  if 0 <= move < len(ACTION_TEXTS):  # the env's regex reads it, but the move is not legal now
    text = ACTION_TEXTS[move]
    reason = f"Action must be {_legal_texts(facing_bet=move in (CHECK, BET))}."
  else:
    text, reason = INVALID_TEXT, "Action must be [Check], [Bet], [Call], or [Fold]."
  return [(f"Player {seat}", text),
          (GAME, f"Player {seat} lost the game by way of invalid move. Reason: {reason}")]


# ---- equilibrium play ----
def tabular_player(game: KuhnPoker, table: Mapping[str, tuple]) -> core.Player:
  """Plays a per-information-set table ``(state, key) -> i32[]`` in every round (jit, vmap).

  Each round is played as a single-round game: the seat's card and the round's own history
  choose the entry (earlier rounds and the chip count are ignored).
  """
  if not isinstance(game, KuhnPoker):
    raise ValueError(f"tabular_player needs a KuhnPoker game, got {game!r}")
  probs = jnp.asarray(bet_probabilities(table))

  def play(state: KuhnState, key: jax.Array) -> jax.Array:
    r = jnp.minimum(state.round, game.rounds - 1)
    card = state.cards[r, state.current_seat]
    n = state.num_round_moves
    opened_with_bet = state.round_moves[r, 0] == BET
    h = jnp.where(n == 0, 0, jnp.where(n == 1, jnp.where(opened_with_bet, 2, 1), 3))
    bets = jax.random.uniform(key) < probs[card, h]
    facing_bet = h >= 2
    return jnp.where(facing_bet, jnp.where(bets, CALL, FOLD),
                     jnp.where(bets, BET, CHECK)).astype(jnp.int32)

  return play


def equilibrium_player(game: KuhnPoker, alpha: float = 1 / 6) -> core.Player:
  """The Nash family member ``alpha`` (in [0, 1/3]) as a player ``(state, key) -> i32[]``.

  Used in every round of a multi-round match too; pure, so ``jax.jit``/``jax.vmap`` work.
  """
  return tabular_player(game, equilibrium_table(alpha))


registry.register(KuhnPoker.id, KuhnPoker)
