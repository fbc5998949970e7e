"""``extract_action`` against the reference's own extraction (``oracle.call("extract")``): the same
move string on every text, over 12,000 distinct responses and a table of named ones.

The texts: 2,500 from ``hypothesis`` (fragments: ``\\boxed``, ``\\fbox``, ``\\text{}``, loose
braces, moves with and without brackets, ASCII and Unicode whitespace, Unicode, lone surrogates;
soups, responses ending in a box, long repetitions), 1,000 responses of 2-16 kB, and the rest
from a seeded ``random.Random`` drawing the same kinds as the hypothesis strategy (hypothesis
costs ~4 ms an example here, too slow for 10,000). Everything is derandomized or seeded, so the
set is the same on every run. All texts go to the oracle in one call (its venv starts once).

Where the oracle returns None (the reference raised, and then plays its invalid move), our move
must be invalid too: a string no game's ``action_from_text`` accepts. On these texts the reference
never raised (its steps are all plain string operations); the rule is here in case a later one does.
"""
import functools
import random

import hypothesis.strategies as st
import jax
import pytest
from hypothesis import HealthCheck, given, settings

import spiral_jax as sj
from spiral_jax.games import core
from spiral_jax.text import actions
from tests.reference import oracle

HYPOTHESIS_EXAMPLES = 2_500
LONG_TEXTS, LONG_SEED = 1_000, 20240517
RANDOM_SEED = 31337
DISTINCT_TEXTS = 12_000  # named + hypothesis + long, topped up from ``random_texts``

BOXES = ["\\boxed{", "\\boxed", "\\boxed {", "\\boxed{}", "\\boxed{\\text{", "\\fbox{", "\\fbox",
         "\\text{", "\\text", "\\textbf{", "\\boxed{\\boxed{", "\\\\boxed{", "\\boxedx{",
         "\\Boxed{", "{", "}", "{{", "}}", "}{", "\\", "\\frac{1}{2}", "\\boxed{[4]}", "\\boxed{4}",
         "\\boxed{bet}", "\\boxed{ bet }", "\\text{bet}", "\\boxed{\\text{check}}"]
MOVES = ["[4]", "4", "[bet]", "bet", "[check]", "check", "call", "[fold]", "Accept", "[Deny]",
         "[Offer: 3 Wood -> 2 Gold]", "Offer: 3 Wood -> 2 Gold", "[", "]", "[[", "]]", "[]", "[ ]"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680",
          "\u2003", "\u2009", "\u2028", "\u2029", "\u202f", "\u3000", "\u200b", "\ufeff",
          " \n\t ", "\n\n"]
WORDS = ["I", "think", "the answer is", "a b c d e", "a b c d e f", "Player 0", "[GAME]", "so:",
         "é", "漢字", "🎲", "\ufffd", "\u202e", "\ud800", "\x00", "<|im_end|>", "$", "\\\\"]
FRAGMENTS = BOXES + MOVES + SPACES + WORDS

fragment = st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6),
                     st.text(st.sampled_from("{}[]\\ boxedfbtxt\n"), max_size=10))
soup = st.lists(fragment, max_size=24).map("".join)
space = st.lists(st.sampled_from(SPACES), max_size=3).map("".join)
# A response that ends in (or near) a box: soup, box, spaced content, maybe closed, maybe a tail.
boxed_response = st.tuples(
    soup, st.sampled_from(["\\boxed{", "\\boxed{\\text{", "\\fbox{", "\\boxed{\\boxed{"]), space,
    st.one_of(st.sampled_from(MOVES), soup), space, st.sampled_from(["}", "}}", "", "} ", "}."]),
    st.one_of(st.just(""), soup)).map("".join)
repeated = st.tuples(st.sampled_from(FRAGMENTS + ["\\boxed{a}", "x "]), st.integers(1, 800),
                     st.one_of(st.just(""), boxed_response)).map(lambda t: t[0] * t[1] + t[2])
RESPONSES = st.one_of(soup, boxed_response, boxed_response, repeated)

NAMED = {  # text -> the reference's move (each also checked against the oracle)
    "": "",
    "   \n": "[]",
    "\\boxed{ bet }": "[ bet ]",  # inner spaces survive: invalid
    "\\boxed{\tbet\n}": "[ bet ]",
    "I raise. \\boxed{\\text{bet}}": "[bet]",  # \text{} stripped
    "\\boxed{\\text{[4]}}": "[4]",
    "\\boxed{\\text{a} \\text{b}}": "[a} \\text{b]",  # literally: one prefix, one suffix
    "bet": "[bet]",  # no box: the whole text
    "  I will bet now  ": "[I will bet now]",
    "I think the best move is to bet": "I think the best move is to bet",  # > 5 words
    "\\fbox{bet}": "[\\fbox{bet}]",  # \fbox never strips
    "\\boxed {bet}": "[\\boxed {bet}]",
    "\\boxed{[bet]} wait, \\boxed{[ch": "[[bet]] wait, \\boxed{[ch",  # unclosed last box
    "\\boxed{4} then \\boxed": "[4] then \\boxed",
    "\\boxed{\\boxed{4}}": "[4]",  # nested: the last \boxed is the inner one
    "\\boxed{\\boxed{a} b}": "[a]",
    "\\boxed{a \\boxed{b} c}": "[b]",
    "\\boxed{[4]} or \\boxed{[5]}": "[5]",
    "\\boxed{\\frac{1}{2}}": "[\\frac{1}{2}]",
    "\\boxed{x \\boxed{y}": "[y]",
    "x \\boxed{y} \\boxed{z": "x [y] \\boxed{z",  # inner boxes of the whole text
    "\\boxed{y\\boxed{z}": "[z]",
    "\\boxed{}": "[]",
    "\\boxed{a b c d e f}": "a b c d e f",
}


def random_texts(seed):
  """The same kinds of response as ``RESPONSES`` from a seeded ``random.Random`` (hypothesis takes
  ~4 ms an example here; this takes ~20 us): soups, responses ending in a box, repetitions."""
  rng = random.Random(seed)
  alphabets = ["{}[]\\ boxedfbtxt\n", "".join(map(chr, range(32, 127))),
               "".join(map(chr, range(0, 0x250))), "".join(SPACES)]

  def chars():
    if rng.random() < 0.3:  # anywhere in Unicode, surrogates included
      return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(7)))
    return "".join(rng.choices(rng.choice(alphabets), k=rng.randrange(11)))

  def soup():
    return "".join(rng.choice(FRAGMENTS) if rng.random() < 0.7 else chars()
                   for _ in range(rng.randrange(25)))

  def spaces():
    return "".join(rng.choices(SPACES, k=rng.randrange(4)))

  def boxed():
    opener = rng.choice(["\\boxed{", "\\boxed{\\text{", "\\fbox{", "\\boxed{\\boxed{"])
    content = rng.choice(MOVES) if rng.random() < 0.6 else soup()
    return "".join([soup(), opener, spaces(), content, spaces(),
                    rng.choice(["}", "}}", "", "} ", "}."]), soup() if rng.random() < 0.5 else ""])

  while True:
    kind = rng.random()
    if kind < 0.3:
      yield soup()
    elif kind < 0.8:
      yield boxed()
    else:
      yield (rng.choice(FRAGMENTS + ["\\boxed{a}", "x "]) * rng.randrange(1, 801)
             + (boxed() if rng.random() < 0.5 else ""))


def long_texts(n, seed):
  """``n`` responses of 2-16 kB from a seeded generator: runs of fragments, boxes among them."""
  rng = random.Random(seed)
  out = []
  for _ in range(n):
    target, parts, size = rng.randrange(2_000, 16_000), [], 0
    while size < target:
      piece = rng.choice(FRAGMENTS) * (rng.randrange(1, 200) if rng.random() < 0.1 else 1)
      parts.append(piece)
      size += len(piece)
    if rng.random() < 0.5:
      parts += ["\\boxed{", rng.choice(SPACES + [""]), rng.choice(MOVES), rng.choice(["}", ""])]
    out.append("".join(parts))
  return out


def hypothesis_texts(n):
  texts = []

  @settings(max_examples=n, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck))
  @given(RESPONSES)
  def collect(text):
    texts.append(text)

  collect()
  return texts


@functools.cache
def reference():
  """text -> the oracle's answer, for the named texts and every generated one (one oracle call)."""
  texts = dict.fromkeys([*NAMED, *hypothesis_texts(HYPOTHESIS_EXAMPLES),
                         *long_texts(LONG_TEXTS, LONG_SEED)])
  more = random_texts(RANDOM_SEED)
  while len(texts) < DISTINCT_TEXTS:
    texts.setdefault(next(more))
  texts = list(texts)
  answers = oracle.call("extract", texts=texts)
  assert len(answers) == len(texts)
  return dict(zip(texts, answers))


@functools.cache
def all_games():
  return [sj.games.make(game_id) for game_id in sj.games.list_games()]


def agrees(ours, theirs):
  if theirs is None:  # the reference raised: its move is invalid, ours must be too
    return all(g.action_from_text(ours) == core.INVALID for g in all_games())
  return ours == theirs


def test_extraction_equals_the_reference_on_every_generated_response():
  answers = reference()
  assert len(answers) == DISTINCT_TEXTS >= 10_000
  assert sum(len(t) >= 2_000 for t in answers) >= LONG_TEXTS
  mismatches = [(t, actions.extract_action(t), a) for t, a in answers.items()
                if not agrees(actions.extract_action(t), a)]
  shown = "\n".join(f"  text={t[:300]!r}\n    ours={o[:200]!r}\n    reference="
                    f"{a if a is None else a[:200]!r}" for t, o, a in mismatches[:20])
  assert not mismatches, (f"{len(mismatches)} of {len(answers)} texts disagree with the "
                          f"reference:\n{shown}")


@pytest.mark.parametrize("text", list(NAMED))
def test_named_cases(text):
  assert reference()[text] == NAMED[text]  # what the reference does, stated by hand
  assert actions.extract_action(text) == NAMED[text]


def test_inner_spaces_and_no_box_decide_validity_as_in_the_reference():
  kuhn = sj.games.make("KuhnPoker-v1")
  state = jax.device_get(kuhn.init(jax.random.key(0)))
  bet = kuhn.action_from_text("[bet]")
  assert kuhn.parse("\\boxed{bet}", state) == bet
  assert kuhn.parse("\\boxed{ bet }", state) == core.INVALID
  assert kuhn.parse("\\boxed{\\text{bet}}", state) == bet
  assert kuhn.parse("bet", state) == bet  # no box: the whole text is the move
  assert kuhn.parse("\\boxed{[check]} no, \\boxed{[bet]", state) == core.INVALID


def test_lenient_is_the_earlier_rule():
  lenient = functools.partial(actions.extract_action, lenient=True)
  assert lenient("\\boxed{ bet }") == "[bet]"
  assert lenient("bet") is None and lenient("") is None
  assert lenient("\\boxed{[bet]} wait, \\boxed{[ch") == "[bet]"
  assert lenient("\\boxed{\\boxed{a} b}") == "[\\boxed{a} b]"
  assert lenient("\\boxed{\\text{bet}}") == "[\\text{bet}]"


def test_non_string_input_is_a_clear_error():
  for lenient in (False, True):
    with pytest.raises(TypeError, match="response must be a str"):
      actions.extract_action(b"\\boxed{[4]}", lenient=lenient)
