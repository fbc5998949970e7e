"""One tokenizer interface over SentencePiece (``.model``) and Hugging Face ``tokenizer.json``.

  tok = load_tokenizer(folder)          # tokenizer.json if present, else tokenizer.model
  ids = tok.encode(prompt)              # no BOS/EOS added; "<|im_end|>" in the text is one id
  text = tok.decode(ids)                # nothing skipped unless skip_special_tokens=True
  tok.eos_id, tok.pad_id, tok.stop_ids  # stop_ids: every id that ends a response
  tok = train_sentencepiece(texts, 4096)  # the tiny CPU policy's tokenizer, deterministic

Special ids. ``eos_id`` is the token that ends a generated turn. SPIRAL prompts every model in chat
format, base models included, so when the configured eos is a plain end-of-text token
(``<|endoftext|>``, ``<|end_of_text|>``: Qwen3-4B-Base, Llama-3-8B) and the vocabulary has a chat
end-of-turn token (``<|im_end|>``, ``<|eot_id|>``), the latter is ``eos_id`` (without one, the
configured eos stays). ``stop_ids`` holds eos, the configured eos ids (``tokenizer_config.json``,
``generation_config.json``) and every known terminator present in the vocabulary. ``pad_id`` is
the configured pad token, else an end-of-text token, else eos. ``bos_id`` is informational: chat
templates write ``<|begin_of_text|>`` into the text, and ``encode`` adds nothing. ``save`` writes
the resolved choices to ``tokenizer_config.json`` (``eos_token``, ``pad_token`` and the extra key
``stop_tokens``), which ``load_tokenizer`` then takes as they are.

Tokenizer objects hold plain attributes (the model bytes or JSON text, the ids, the config dict);
the native backend is rebuilt when unpickled.
"""
from __future__ import annotations

import abc
import io
import os
import pathlib
from typing import Any, Iterable, Mapping, Sequence

import sentencepiece as spm
import tokenizers
from sentencepiece import sentencepiece_model_pb2

from spiral_jax import files
from spiral_jax.errors import InputError

CHAT_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
# One piece for the answer box's opening, space included ("\u2581" is SentencePiece's space): in a
# scripted answer the token before the move is then the last word of the explanation (the card).
ANSWER_BOX_TOKEN = "\u2581\\boxed{["
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>")  # chat turn terminators, in order of preference
END_OF_TEXT_TOKENS = ("<|endoftext|>", "<|end_of_text|>")  # document terminators
OTHER_STOP_TOKENS = ("<|eom_id|>",)  # Llama 3.1 ends a tool-call message with it
BEGIN_OF_TEXT_TOKENS = ("<|begin_of_text|>",)

TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_MODEL = "tokenizer.model"
TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"

_SP_SPACE = "\u2581"  # SentencePiece's meta symbol for a space
_SP_TYPES = sentencepiece_model_pb2.ModelProto.SentencePiece

Token = str | int  # a token string or an id


class Tokenizer(abc.ABC):
  """The interface the model, sampler and rollout use.

  vocab_size: one more than the largest id (ids in [0, vocab_size) all decode)
  eos_id:     the id that ends a generated turn (Qwen chat ``<|im_end|>``, Llama 3 ``<|eot_id|>``)
  pad_id:     the id used to pad batches
  bos_id:     the begin-of-text id, or None (chat templates write it into the text when needed)
  stop_ids:   every id that ends a response, eos first
  special_tokens: the token strings ``decode(..., skip_special_tokens=True)`` leaves out
  config:     the ``tokenizer_config.json`` dict this came with (kept so ``save`` preserves it)
  """
  vocab_size: int
  eos_id: int
  pad_id: int
  bos_id: int | None
  stop_ids: tuple[int, ...]
  special_tokens: tuple[str, ...]
  config: dict[str, Any]

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """The ids of ``text``; no BOS/EOS added; special-token strings in the text map to their ids."""

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """``[encode(t) for t in texts]``, batched in the backend where it can be."""
    return [self.encode(text) for text in texts]

  @abc.abstractmethod
  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    """The text of ``ids`` (any int sequence or 1-D array). Ids outside [0, vocab_size) decode to
    nothing, as ``tokenizers`` does, so a model whose embedding is padded past the vocabulary
    cannot crash a rollout."""

  @abc.abstractmethod
  def token_to_id(self, token: str) -> int | None:
    """The id of a token string, or None when the vocabulary lacks it."""

  @abc.abstractmethod
  def id_to_token(self, token_id: int) -> str | None:
    """The token string of an id, or None when out of range."""

  @abc.abstractmethod
  def save(self, folder: str | os.PathLike) -> None:
    """Writes the files ``load_tokenizer(folder)`` reads back into an equal tokenizer."""

  def _resolve_specials(self, *, eos_token: Token | None, pad_token: Token | None,
                        bos_token: Token | None, stop_tokens: Sequence[Token],
                        native_eos: int | None, native_pad: int | None,
                        native_bos: int | None) -> None:
    """Sets eos_id, pad_id, bos_id and stop_ids (see the module docstring for the rules)."""
    stops = [self._id_of(t, "stop_tokens") for t in stop_tokens]
    eos_id = self._id_of(eos_token, "eos_token")
    for candidate in (self._first_present(END_OF_TURN_TOKENS), *stops[:1], native_eos):
      if eos_id is None:
        eos_id = candidate
    if eos_id is None:
      raise InputError("this tokenizer has no end-of-turn token: pass eos_token= (a token string "
                       "or id), or add eos_token to tokenizer_config.json")
    pad_id = self._id_of(pad_token, "pad_token")
    for candidate in (self._first_present(END_OF_TEXT_TOKENS), native_pad, eos_id):
      if pad_id is None:
        pad_id = candidate
    bos_id = self._id_of(bos_token, "bos_token")
    if bos_id is None:
      bos_id = self._first_present(BEGIN_OF_TEXT_TOKENS)
    if bos_id is None:
      bos_id = native_bos
    stops = [eos_id] + stops
    known = END_OF_TURN_TOKENS + END_OF_TEXT_TOKENS + OTHER_STOP_TOKENS
    stops += [self.token_to_id(t) for t in known]
    self.eos_id, self.pad_id, self.bos_id = int(eos_id), int(pad_id), bos_id
    self.stop_ids = tuple(dict.fromkeys(int(i) for i in stops if i is not None))

  def _id_of(self, token: Token | None, field: str) -> int | None:
    if token is None:
      return None
    if isinstance(token, str):
      token_id = self.token_to_id(token)
      if token_id is None:
        raise InputError(f"{field}={token!r} is not in the vocabulary; pass a token it has")
      return token_id
    if not 0 <= int(token) < self.vocab_size:
      raise InputError(f"{field}={token} is out of range [0, {self.vocab_size})")
    return int(token)

  def _first_present(self, tokens: Iterable[str]) -> int | None:
    for token in tokens:
      token_id = self.token_to_id(token)
      if token_id is not None:
        return token_id
    return None

  def _in_range(self, ids: Sequence[int]) -> list[int]:
    size = self.vocab_size
    return [i for i in map(int, ids) if 0 <= i < size]

  def _saved_config(self) -> dict[str, Any]:
    config = dict(self.config)
    config["eos_token"] = self.id_to_token(self.eos_id)
    config["pad_token"] = self.id_to_token(self.pad_id)
    if self.bos_id is not None:
      config["bos_token"] = self.id_to_token(self.bos_id)
    config["stop_tokens"] = [self.id_to_token(i) for i in self.stop_ids]
    return config

  def __getstate__(self) -> dict[str, Any]:
    return {k: v for k, v in self.__dict__.items() if k != "_backend"}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._backend = self._build_backend()

  @abc.abstractmethod
  def _build_backend(self) -> Any:
    """The native tokenizer object, from the plain attributes."""

  def __repr__(self) -> str:
    eos = self.id_to_token(self.eos_id)
    return (f"{type(self).__name__}(vocab_size={self.vocab_size}, eos={eos!r}, "
            f"pad={self.id_to_token(self.pad_id)!r}, stop_ids={self.stop_ids})")


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model (``tokenizer.model`` bytes).

  Text round-trips exactly (``decode(encode(t)) == t`` for any str) when the model normalises
  nothing, adds no dummy prefix and has byte fallback, as ``train_sentencepiece`` models do: a
  literal U+2581 (SentencePiece's space symbol) is then written as its three byte pieces.
  """

  def __init__(self, model: bytes | str | os.PathLike, *, eos_token: Token | None = None,
               pad_token: Token | None = None, bos_token: Token | None = None,
               stop_tokens: Sequence[Token] = (), config: Mapping[str, Any] | None = None):
    self.model_proto = model if isinstance(model, bytes) else pathlib.Path(model).read_bytes()
    self.config = dict(config or {})
    self._backend = self._build_backend()
    self.vocab_size = self._backend.get_piece_size()
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(self.model_proto)
    special_types = (_SP_TYPES.CONTROL, _SP_TYPES.UNKNOWN, _SP_TYPES.USER_DEFINED)
    self.special_tokens = tuple(p.piece for p in proto.pieces if p.type in special_types)
    self._special_ids = frozenset(self._backend.piece_to_id(p) for p in self.special_tokens)
    spec = proto.normalizer_spec
    byte_ids = [self._backend.piece_to_id(f"<0x{b:02X}>") for b in _SP_SPACE.encode("utf-8")]
    exact = (spec.name == "identity" and not spec.add_dummy_prefix and
             not spec.remove_extra_whitespaces and proto.trainer_spec.byte_fallback)
    self._space_symbol_ids = byte_ids if exact else None  # how a literal U+2581 is encoded
    native = lambda i: i if i >= 0 else None
    self._resolve_specials(eos_token=eos_token, pad_token=pad_token, bos_token=bos_token,
                           stop_tokens=stop_tokens, native_eos=native(self._backend.eos_id()),
                           native_pad=native(self._backend.pad_id()),
                           native_bos=native(self._backend.bos_id()))

  def _build_backend(self) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=self.model_proto)

  def encode(self, text: str) -> list[int]:
    if self._space_symbol_ids is not None and _SP_SPACE in text:
      ids: list[int] = []
      for i, chunk in enumerate(text.split(_SP_SPACE)):
        if i:
          ids += self._space_symbol_ids
        ids += self._backend.encode(chunk)
      return ids
    return self._backend.encode(text)

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    if self._space_symbol_ids is not None and any(_SP_SPACE in t for t in texts):
      return [self.encode(text) for text in texts]
    return self._backend.encode(list(texts))

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    ids = self._in_range(ids)
    if skip_special_tokens:
      ids = [i for i in ids if i not in self._special_ids]
    return self._backend.decode(ids)

  def token_to_id(self, token: str) -> int | None:
    token_id = self._backend.piece_to_id(token)
    return token_id if self._backend.id_to_piece(token_id) == token else None

  def id_to_token(self, token_id: int) -> str | None:
    return self._backend.id_to_piece(int(token_id)) if 0 <= token_id < self.vocab_size else None

  def save(self, folder: str | os.PathLike) -> None:
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SENTENCEPIECE_MODEL).write_bytes(self.model_proto)
    files.write_json(folder / TOKENIZER_CONFIG, self._saved_config(), indent=2)


class HFTokenizer(Tokenizer):
  """A Hugging Face fast tokenizer (the text of a ``tokenizer.json``)."""

  def __init__(self, tokenizer_json: str, *, eos_token: Token | None = None,
               pad_token: Token | None = None, bos_token: Token | None = None,
               stop_tokens: Sequence[Token] = (), config: Mapping[str, Any] | None = None):
    if not isinstance(tokenizer_json, str):
      raise ValueError("tokenizer_json must be the JSON text of a tokenizer.json; use "
                       "HFTokenizer.from_file(path) for a path")
    self.tokenizer_json = tokenizer_json
    self.config = dict(config or {})
    self._backend = self._build_backend()
    self.vocab_size = max(self._backend.get_vocab(with_added_tokens=True).values()) + 1
    added = self._backend.get_added_tokens_decoder()
    self.special_tokens = tuple(t.content for _, t in sorted(added.items()) if t.special)
    self._resolve_specials(eos_token=eos_token, pad_token=pad_token, bos_token=bos_token,
                           stop_tokens=stop_tokens, native_eos=None, native_pad=None,
                           native_bos=None)

  @classmethod
  def from_file(cls, path: str | os.PathLike, **specials: Any) -> HFTokenizer:
    """From a ``tokenizer.json`` path; ``specials`` as in the constructor."""
    return cls(pathlib.Path(path).read_text(encoding="utf-8"), **specials)

  @classmethod
  def from_tokenizers(cls, tokenizer: tokenizers.Tokenizer, **specials: Any) -> HFTokenizer:
    """From a ``tokenizers.Tokenizer`` object; ``specials`` as in the constructor."""
    return cls(tokenizer.to_str(), **specials)

  def _build_backend(self) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_str(self.tokenizer_json)

  def encode(self, text: str) -> list[int]:
    return self._backend.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    batch_fn = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
    return [e.ids for e in batch_fn(list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    return self._backend.decode(self._in_range(ids), skip_special_tokens=skip_special_tokens)

  def token_to_id(self, token: str) -> int | None:
    return self._backend.token_to_id(token)

  def id_to_token(self, token_id: int) -> str | None:
    return self._backend.id_to_token(int(token_id)) if token_id >= 0 else None

  def save(self, folder: str | os.PathLike) -> None:
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TOKENIZER_JSON).write_text(self.tokenizer_json, encoding="utf-8")
    config = self._saved_config()
    config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")  # transformers loads it as is
    files.write_json(folder / TOKENIZER_CONFIG, config, indent=2)


def load_tokenizer(folder: str | os.PathLike, *, eos_token: Token | None = None,
                   pad_token: Token | None = None) -> Tokenizer:
  """The tokenizer of a Hugging Face-style folder: ``tokenizer.json`` (preferred, as in
  transformers) or ``tokenizer.model``, with eos/pad/bos/stop tokens from ``tokenizer_config.json``,
  ``special_tokens_map.json`` and ``generation_config.json`` when present. ``eos_token`` and
  ``pad_token`` override those files."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise InputError(f"tokenizer folder {str(folder)!r} does not exist or is not a folder")
  config = files.read_json(folder / TOKENIZER_CONFIG)
  special_map = files.read_json(folder / SPECIAL_TOKENS_MAP)
  generation = files.read_json(folder / GENERATION_CONFIG)
  token = lambda key: _token_content(config.get(key)) or _token_content(special_map.get(key))
  config_eos, config_pad, config_bos = token("eos_token"), token("pad_token"), token("bos_token")
  stop_tokens: list[Token] = []
  if "stop_tokens" in config:  # written by save(): authoritative
    stop_tokens += config["stop_tokens"]
  else:
    stop_tokens += [config_eos] if config_eos else []
    stop_tokens += _as_list(generation.get("eos_token_id"))
    if config_eos in END_OF_TEXT_TOKENS:
      config_eos = None  # a base model's document end: let the chat end-of-turn token be eos
  if config_pad is None and generation.get("pad_token_id") is not None:
    config_pad = int(generation["pad_token_id"])
  specials = dict(eos_token=eos_token if eos_token is not None else config_eos,
                  pad_token=pad_token if pad_token is not None else config_pad,
                  bos_token=config_bos, stop_tokens=stop_tokens, config=config)
  for name, kind in ((TOKENIZER_JSON, HFTokenizer.from_file),
                     (SENTENCEPIECE_MODEL, SentencePieceTokenizer)):
    if (path := folder / name).exists():
      files.check_readable(path, f"a {name}")
      try:
        (tokenizer := kind(path, **specials)).encode("a")  # a damaged file fails by here
      except InputError:
        raise
      except Exception as e:  # noqa: BLE001  (sentencepiece, tokenizers, JSON, UTF-8: any)
        raise InputError(f"{path} could not be read as a tokenizer ({type(e).__name__}: "
                         f"{str(e).strip()[:200]}); copy the model's own {name} again") from e
      return tokenizer
  found = sorted(p.name for p in folder.iterdir())
  raise InputError(f"{str(folder)!r} has neither {TOKENIZER_JSON} nor {SENTENCEPIECE_MODEL} "
                   f"(found {found}); save a tokenizer there first")


def train_sentencepiece(sentences: Iterable[str], vocab_size: int, *,
                        user_defined_symbols: Sequence[str] = CHAT_SPECIAL_TOKENS, seed: int = 0,
                        model_type: str = "bpe", eos_token: str = "<|im_end|>",
                        pad_token: str = "<|endoftext|>") -> SentencePieceTokenizer:
  """A byte-fallback SentencePiece model trained in memory; the same inputs give the same bytes.

  The model normalises nothing and adds no dummy prefix, so any text round-trips; digits are split
  one per piece. ``user_defined_symbols`` are single ids (ids 1, 2, ... after ``<unk>`` = 0); there
  are no ``<s>``/``</s>``/``<pad>`` pieces: eos and pad are the chat tokens named. On a small corpus
  the vocabulary may come out smaller than ``vocab_size`` (a soft limit); it must still hold the
  256 byte pieces, every distinct character and the symbols.
  """
  if model_type not in ("bpe", "unigram"):
    raise ValueError(f"model_type={model_type!r} is not supported; use 'bpe' or 'unigram'")
  sentences = [s for s in sentences if s]
  if not sentences:
    raise ValueError("sentences is empty; pass the texts to train on (e.g. rendered game prompts)")
  for i, sentence in enumerate(sentences):
    if not isinstance(sentence, str):
      raise ValueError(f"sentences[{i}] must be a str, got {type(sentence).__name__}")
  model = io.BytesIO()
  spm.set_random_generator_seed(seed)
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, user_defined_symbols=list(user_defined_symbols),
        byte_fallback=True, hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        num_threads=1, shuffle_input_sentence=False, input_sentence_size=0,  # deterministic
        max_sentence_length=1 << 20, minloglevel=2)
  except RuntimeError as error:
    raise ValueError(f"SentencePiece training failed for vocab_size={vocab_size}: {error}. With "
                     "byte fallback vocab_size must exceed 256 + distinct characters + symbols"
                     ) from error
  return SentencePieceTokenizer(model.getvalue(), eos_token=eos_token, pad_token=pad_token)


def _token_content(value: Any) -> str | None:
  """A token from a config value: a str, or an AddedToken dict's content."""
  if isinstance(value, Mapping):
    value = value.get("content")
  return value if isinstance(value, str) else None


def _as_list(value: Any) -> list[Any]:
  return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]

