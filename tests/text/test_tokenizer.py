"""Tokenizers: HF ``tokenizer.json`` ids equal ``transformers``' for the same file; SentencePiece
training is deterministic and round-trips any text; folders load, save and reload."""
import json
import pickle
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from spiral_jax.errors import InputError
from spiral_jax.text import templates
from spiral_jax.text.tokenizer import (CHAT_SPECIAL_TOKENS, HFTokenizer, SentencePieceTokenizer,
                                       load_tokenizer, train_sentencepiece)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

GAME_TEXTS = [templates.spiral_prompt(f"[GAME] You are Player {i % 2} in Tic Tac Toe.\n"
                                      f" {i} | {i + 1} | {i + 2}\n---+---+---\nAvailable moves: "
                                      f"'[{i % 9}]', '[check]', '[bet]'")
              + f"I play \\boxed{{{i % 9}}}.<|im_end|>" for i in range(60)]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"]
SAMPLES = ["", "hello world", "  two  spaces\tand tab\n", "<|im_start|>user\nhi<|im_end|>\n",
           "café 漢字 🎲 \\boxed{[bet]}", "<|im_end|><|im_end|>x<|endoftext|>", "<|im_start",
           "▁x ▁"]


def byte_level_bpe(specials, vocab_size=400):
  """A Qwen/Llama-3-like byte-level BPE with the given special tokens, trained on the game texts."""
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=specials, show_progress=False,
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(GAME_TEXTS, trainer)
  return tok


def word_level(specials):
  words = sorted({w for text in GAME_TEXTS for w in text.split()})
  vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  tok.add_special_tokens(specials)
  return tok


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
  """A Qwen3-Base-like folder: byte-level BPE, config eos <|endoftext|>, a chat template."""
  folder = tmp_path_factory.mktemp("qwen")
  byte_level_bpe(QWEN_SPECIALS).save(str(folder / "tokenizer.json"))
  config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>", "chat_template": "{{ messages }}"}
  (folder / "tokenizer_config.json").write_text(json.dumps(config))
  (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 0}))
  return folder


@pytest.fixture(scope="module")
def sp_tokenizer():
  return train_sentencepiece(GAME_TEXTS, 1000)


# ---- Hugging Face tokenizer.json ----

@pytest.mark.parametrize("kind", ["bpe_qwen", "bpe_llama", "word_llama"])
def test_hf_ids_equal_transformers(tmp_path, kind):
  specials = QWEN_SPECIALS if kind.endswith("qwen") else LLAMA_SPECIALS
  backend = byte_level_bpe(specials) if kind.startswith("bpe") else word_level(specials)
  backend.save(str(tmp_path / "tokenizer.json"))
  ours = HFTokenizer.from_file(tmp_path / "tokenizer.json")
  theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
  texts = SAMPLES + GAME_TEXTS[:5] + [templates.apply_chat_template(
      [{"role": "user", "content": "hi there"}], "llama3")]
  for text in texts:
    ids = ours.encode(text)
    assert ids == theirs(text, add_special_tokens=False)["input_ids"], text
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=False,
                                             clean_up_tokenization_spaces=False)
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(
        ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
  assert ours.encode_batch(texts) == [ours.encode(t) for t in texts]
  assert ours.vocab_size == len(theirs)
  for token in specials:
    assert ours.token_to_id(token) == theirs.convert_tokens_to_ids(token)
    assert len(ours.encode(f"a{token}b")) == len(ours.encode("a")) + 1 + len(ours.encode("b"))


def test_hf_chat_prompt_ids_equal_transformers_apply_chat_template(qwen_folder):
  from tests.text.test_templates import QWEN3_JINJA
  ours = load_tokenizer(qwen_folder)
  theirs = transformers.AutoTokenizer.from_pretrained(str(qwen_folder))
  theirs.chat_template = QWEN3_JINJA
  messages = [{"role": "user", "content": templates.spiral_instruction("[GAME] board 0 | 1")}]
  expected = theirs.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                        return_dict=False)
  assert ours.encode(templates.spiral_prompt("[GAME] board 0 | 1")) == list(expected)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=40) | st.sampled_from(SAMPLES))
def test_hf_byte_level_round_trips_any_text(qwen_folder, text):
  tok = load_tokenizer(qwen_folder)
  assert tok.decode(tok.encode(text)) == text


def test_hf_base_model_specials(qwen_folder):
  """Qwen3-Base names <|endoftext|> as eos; chat generation must stop at <|im_end|> too."""
  tok = load_tokenizer(qwen_folder)
  assert isinstance(tok, HFTokenizer)
  im_end, endoftext = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
  assert tok.eos_id == im_end
  assert tok.stop_ids == (im_end, endoftext)
  assert tok.pad_id == endoftext
  assert tok.bos_id is None
  assert set(tok.special_tokens) == set(QWEN_SPECIALS)
  assert load_tokenizer(qwen_folder, eos_token="<|endoftext|>").eos_id == endoftext


def test_hf_llama_instruct_specials(tmp_path):
  byte_level_bpe(LLAMA_SPECIALS).save(str(tmp_path / "tokenizer.json"))
  (tmp_path / "tokenizer_config.json").write_text(json.dumps(
      {"bos_token": {"content": "<|begin_of_text|>", "special": True}, "eos_token": "<|eot_id|>"}))
  (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 4, 5]}))
  tok = load_tokenizer(tmp_path)
  eot, end, eom = (tok.token_to_id(t) for t in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"))
  assert (eot, end, eom) == (5, 1, 4)
  assert tok.eos_id == eot and tok.bos_id == 0
  assert tok.stop_ids == (eot, end, eom)
  assert tok.pad_id == end


def test_hf_without_chat_tokens_keeps_configured_eos(tmp_path):
  word_level(["<|endoftext|>", "<pad>"]).save(str(tmp_path / "tokenizer.json"))
  (tmp_path / "tokenizer_config.json").write_text(json.dumps(
      {"eos_token": "<|endoftext|>", "pad_token": "<pad>"}))
  tok = load_tokenizer(tmp_path)
  assert tok.id_to_token(tok.eos_id) == "<|endoftext|>"
  assert tok.id_to_token(tok.pad_id) == "<pad>"


def test_hf_without_any_eos_raises(tmp_path):
  word_level(["<x>"]).save(str(tmp_path / "tokenizer.json"))
  with pytest.raises(ValueError, match="pass eos_token="):
    load_tokenizer(tmp_path)


def test_hf_save_round_trips_and_transformers_loads_it(qwen_folder, tmp_path):
  tok = load_tokenizer(qwen_folder)
  tok.save(tmp_path)
  again = load_tokenizer(tmp_path)
  assert isinstance(again, HFTokenizer)
  for field in ("vocab_size", "eos_id", "pad_id", "bos_id", "stop_ids", "special_tokens"):
    assert getattr(again, field) == getattr(tok, field), field
  assert again.encode_batch(SAMPLES) == tok.encode_batch(SAMPLES)
  saved_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
  assert saved_config["chat_template"] == "{{ messages }}"  # the rest of the config is kept
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  assert theirs.eos_token_id == tok.eos_id and theirs.pad_token_id == tok.pad_id
  assert theirs(SAMPLES[3], add_special_tokens=False)["input_ids"] == tok.encode(SAMPLES[3])


# ---- SentencePiece ----

def test_sentencepiece_training_is_deterministic(sp_tokenizer):
  again = train_sentencepiece(GAME_TEXTS, 1000)
  assert again.model_proto == sp_tokenizer.model_proto
  other = train_sentencepiece(GAME_TEXTS[:30], 1000)
  assert other.model_proto != sp_tokenizer.model_proto
  unigram = [train_sentencepiece(GAME_TEXTS, 600, model_type="unigram") for _ in range(2)]
  assert unigram[0].model_proto == unigram[1].model_proto


def test_sentencepiece_special_tokens(sp_tokenizer):
  tok = sp_tokenizer
  ids = [tok.token_to_id(t) for t in CHAT_SPECIAL_TOKENS]
  assert ids == [1, 2, 3]
  assert tok.eos_id == tok.token_to_id("<|im_end|>")
  assert tok.pad_id == tok.token_to_id("<|endoftext|>")
  assert tok.stop_ids == (tok.eos_id, tok.pad_id)
  assert tok.bos_id is None
  text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
  encoded = tok.encode(text)
  assert encoded[0] == ids[0] and ids[1] in encoded
  assert tok.decode(encoded) == text
  assert tok.decode(encoded, skip_special_tokens=True) == "user\nhi\nassistant\n"
  assert tok.token_to_id("<|not a token|>") is None
  assert 200 < tok.vocab_size <= 1000  # a soft limit on a small corpus


def test_sentencepiece_byte_fallback_decodes_to_text(sp_tokenizer):
  text = "Ωmega 漢字 🎲"  # none of these characters is in the training texts
  ids = sp_tokenizer.encode(text)
  pieces = [sp_tokenizer.id_to_token(i) for i in ids]
  assert sum(p.startswith("<0x") for p in pieces) >= len("Ω漢字🎲".encode("utf-8"))
  assert sp_tokenizer.decode(ids) == text
  assert sp_tokenizer.decode(sp_tokenizer.encode("漢")[:1]) == "\ufffd"  # a cut byte sequence


# arbitrary unicode, mixed with what is hard for SentencePiece: its space symbol, specials
TRICKY = CHAT_SPECIAL_TOKENS + ("\u2581", " ", "  ", "\n", "\r\n", "\t", "\x00", "<0x41>", "<unk>")
any_text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(TRICKY)),
                    max_size=8).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=any_text)
def test_sentencepiece_round_trips_any_text(sp_tokenizer, text):
  ids = sp_tokenizer.encode(text)
  assert sp_tokenizer.decode(ids) == text
  assert sp_tokenizer.encode_batch([text, "x"]) == [ids, sp_tokenizer.encode("x")]


def test_sentencepiece_vocab_too_small_raises():
  with pytest.raises(ValueError, match="vocab_size=100"):
    train_sentencepiece(GAME_TEXTS, 100)
  with pytest.raises(ValueError, match="sentences is empty"):
    train_sentencepiece([], 1000)


def test_sentencepiece_save_round_trips(sp_tokenizer, tmp_path):
  sp_tokenizer.save(tmp_path)
  again = load_tokenizer(tmp_path)
  assert isinstance(again, SentencePieceTokenizer)
  assert again.model_proto == sp_tokenizer.model_proto
  for field in ("vocab_size", "eos_id", "pad_id", "bos_id", "stop_ids", "special_tokens"):
    assert getattr(again, field) == getattr(sp_tokenizer, field), field
  # an explicit choice survives the round trip
  custom = SentencePieceTokenizer(sp_tokenizer.model_proto, eos_token="<|endoftext|>",
                                  stop_tokens=["<|im_start|>"])
  custom.save(tmp_path / "custom")
  assert load_tokenizer(tmp_path / "custom").stop_ids == custom.stop_ids == (3, 1, 2)


# ---- shared behaviour ----

@pytest.fixture(params=["sentencepiece", "hf"])
def any_tokenizer(request, sp_tokenizer, qwen_folder):
  return sp_tokenizer if request.param == "sentencepiece" else load_tokenizer(qwen_folder)


def test_encode_batch_equals_encode(any_tokenizer):
  assert any_tokenizer.encode_batch(SAMPLES) == [any_tokenizer.encode(t) for t in SAMPLES]
  assert [any_tokenizer.decode(ids) for ids in any_tokenizer.encode_batch(SAMPLES)] == SAMPLES


def test_decode_is_tolerant(any_tokenizer):
  tok = any_tokenizer
  ids = tok.encode("hello <|im_end|>")
  assert tok.decode(np.asarray(ids, np.int32)) == "hello <|im_end|>"
  assert tok.decode([-1] + ids + [tok.vocab_size, 10**9]) == "hello <|im_end|>"
  for i in range(tok.vocab_size):  # every id in range decodes
    assert isinstance(tok.decode([i]), str)
  assert tok.id_to_token(tok.vocab_size) is None


def test_pickle_round_trip(any_tokenizer):
  again = pickle.loads(pickle.dumps(any_tokenizer))
  assert again.encode_batch(SAMPLES) == any_tokenizer.encode_batch(SAMPLES)
  assert again.stop_ids == any_tokenizer.stop_ids
  state = any_tokenizer.__getstate__()
  assert all(isinstance(v, (bytes, str, int, tuple, dict, frozenset, list, type(None)))
             for v in state.values()), {k: type(v) for k, v in state.items()}


def test_load_tokenizer_picks_by_files(tmp_path, sp_tokenizer, qwen_folder):
  both = tmp_path / "both"
  sp_tokenizer.save(both)
  assert isinstance(load_tokenizer(both), SentencePieceTokenizer)
  (both / "tokenizer.json").write_text((qwen_folder / "tokenizer.json").read_text())
  assert isinstance(load_tokenizer(both), HFTokenizer)  # tokenizer.json wins, as in transformers
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="neither tokenizer.json nor tokenizer.model"):
    load_tokenizer(tmp_path / "empty")
  with pytest.raises(ValueError, match="does not exist"):
    load_tokenizer(tmp_path / "missing")


def test_bad_special_token_names_the_field(sp_tokenizer):
  with pytest.raises(ValueError, match=r"eos_token='<\|eot_id\|>' is not in the vocabulary"):
    SentencePieceTokenizer(sp_tokenizer.model_proto, eos_token="<|eot_id|>")
  with pytest.raises(ValueError, match=r"pad_token=99999 is out of range"):
    SentencePieceTokenizer(sp_tokenizer.model_proto, pad_token=99999)


def test_plain_sentencepiece_model_uses_its_own_specials():
  """A Llama-2/Gemma-style model (<s>, </s>, dummy prefix, NFKC) keeps its own eos and bos."""
  import io
  import sentencepiece as spm
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(GAME_TEXTS), model_writer=model,
                                 vocab_size=90, num_threads=1, minloglevel=2)
  tok = SentencePieceTokenizer(model.getvalue())
  assert tok.id_to_token(tok.eos_id) == "</s>" and tok.id_to_token(tok.bos_id) == "<s>"
  assert tok.pad_id == tok.eos_id and tok.stop_ids == (tok.eos_id,)
  assert tok.decode(tok.encode("You are playing")) == "You are playing"
  assert "<s>" in tok.special_tokens


LFS = "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 11422654\n".format("0" * 64)


@pytest.mark.parametrize("name", ["tokenizer.model", "tokenizer.json"])
@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_text(LFS), "is a git-LFS pointer, not a {name}: fetch the file itself"),
    (lambda p: p.write_bytes(b""), "is empty, not a {name}"),
    (lambda p: p.write_bytes(p.read_bytes()[:40]), "could not be read as a tokenizer"),
    (lambda p: p.write_bytes(b"\x00\xff" * 20), "could not be read as a tokenizer"),
], ids=["lfs-pointer", "empty", "cut-short", "garbage"])
def test_a_damaged_tokenizer_file_is_named(tmp_path, sp_tokenizer, qwen_folder, name, damage,
                                           says):
  """A run's or a model's tokenizer file that is not the real file: one InputError naming the
  file and what to do, never sentencepiece's or tokenizers' internal message alone."""
  if name == "tokenizer.model":
    sp_tokenizer.save(tmp_path)
  else:
    (tmp_path / name).write_text((qwen_folder / name).read_text())
  damage(tmp_path / name)
  with pytest.raises(InputError, match=re.escape(str(tmp_path / name))) as error:
    load_tokenizer(tmp_path)
  assert says.format(name=name) in str(error.value)
