"""Reasoning benchmarks as TFDS datasets (ArrayRecord, no TensorFlow), built from local files.

  source = build("math500", source_dir="~/benchmarks", data_dir="~/tensorflow_datasets")
  problems = load("math500", data_dir="~/tensorflow_datasets")   # list of dicts
  problems[0] == {"id": "test/algebra/1.json", "question": "...", "answer": "\\frac{1}{2}",
                  "choices": [], "kind": "math"}

Real files go in ``<source_dir>/<benchmark>/``; every file there with a readable suffix is read,
in name order (so AIME 2025's parts I and II may be two files). All but GPQA read ``*.jsonl``,
``*.json`` (a list of records) or ``*.parquet``; GPQA reads ``*.csv``. Fields (public releases):

  math500        problem, answer, unique_id (HuggingFaceH4/MATH-500 test.jsonl)
  aime24, aime25 problem|question, answer, id (HuggingFaceH4/aime_2024, Qwen2.5-Math's
                 data/aime24/test.jsonl, math-ai/aime25, opencompass/AIME2025 with no id)
  amc23          question, answer (a number), id (Qwen2.5-Math's data/amc23/test.jsonl)
  olympiadbench  question, final_answer (list of "$...$"), id, context (OlympiadBench
                 OE_TO_maths_en_COMP, as in Qwen2.5-Math's data/olympiadbench/test.jsonl)
  minerva_math   problem, solution (the answer is its last \\boxed{}), idx
                 (Qwen2.5-Math's data/minerva_math/test.jsonl)
  gpqa_diamond   Question, Correct Answer, Incorrect Answer 1..3, Record ID (Idavidrein/gpqa
                 gpqa_diamond.csv); the four options are shuffled with a seed from the SHA-256
                 of the Record ID, so every build gives the same letters
  mmlu_pro       question_id, question, options (list), answer (letter), answer_index
                 (TIGER-Lab/MMLU-Pro test split: its parquet, or the same records as jsonl)

Records without an id get ``<file stem>-<index>``. Ids must be unique within a benchmark.

The builder is one ``GeneratorBasedBuilder`` with a ``BuilderConfig`` per benchmark, written as
ArrayRecord and read back with ``as_data_source`` (``tfds.load``/``as_dataset`` need TensorFlow).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import pathlib
import random
from typing import Any, Callable, Iterator, Mapping, Sequence

import tensorflow_datasets as tfds
from etils import epath

from spiral_jax.errors import InputError
from spiral_jax.eval import answers

SPLIT = "test"
KINDS = ("math", "choice")


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """name: the config name and source folder; kind: 'math' | 'choice'; suffixes: files read;
  origin: the public release whose format is expected; to_example: (record, where, default
  id) -> example, where 'where' (file:line) names the record in errors."""
  name: str
  kind: str
  suffixes: tuple[str, ...]
  origin: str
  to_example: Callable[[Mapping[str, Any], str, str], dict[str, Any]]


def _field(record: Mapping[str, Any], names: Sequence[str], where: str) -> Any:
  for name in names:
    if record.get(name) is not None:
      return record[name]
  raise InputError(f"{where}: no field {' / '.join(names)} in a record with fields "
                   f"{sorted(record)}; is this the right file?")


def _answer_text(value: Any) -> str:
  """Answers as text: 27.0 -> '27', ['$1$', '$2$'] -> '1, 2', '$x$' -> 'x'."""
  if hasattr(value, "tolist"):
    value = value.tolist()
  if isinstance(value, (list, tuple)):
    return ", ".join(_answer_text(v) for v in value)
  if isinstance(value, float) and value.is_integer():
    return str(int(value))
  text = str(value).strip()
  if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
    text = text.strip("$").strip()
  return text


def _record_id(record: Mapping[str, Any], default: str) -> str:
  for name in ("unique_id", "id", "ID", "idx", "question_id", "Record ID"):
    if record.get(name) not in (None, ""):
      return str(record[name])
  return default


def _math_example(record: Mapping[str, Any], where: str, default_id: str) -> dict[str, Any]:
  question = str(_field(record, ("problem", "question", "Problem", "Question"), where)).strip()
  context = record.get("context")
  if context:
    question = f"{str(context).strip()}\n\n{question}"
  names = ("answer", "Answer", "final_answer")
  if any(record.get(n) is not None for n in names):
    answer = _answer_text(_field(record, names, where))
  else:  # Minerva Math keeps the answer only in the solution's box
    solution = str(_field(record, ("solution", "Solution"), where))
    answer = answers.extract_boxed(solution)
    if answer is None:
      raise InputError(f"{where}: the solution has no \\boxed{{}} answer and there is no "
                       "'answer' field")
  if not answer:
    raise InputError(f"{where}: the answer is empty")
  return {"id": _record_id(record, default_id), "question": question, "answer": answer,
          "choices": [], "kind": "math"}


def _check_choices(options: list[str], where: str) -> None:
  if not 2 <= len(options) <= len(answers.CHOICE_LETTERS):
    raise InputError(f"{where}: {len(options)} options; between 2 and "
                     f"{len(answers.CHOICE_LETTERS)} are supported")


def _gpqa_example(record: Mapping[str, Any], where: str, default_id: str) -> dict[str, Any]:
  question = str(_field(record, ("Question",), where)).strip()
  correct = str(_field(record, ("Correct Answer",), where)).strip()
  wrong = [str(_field(record, (f"Incorrect Answer {i}",), where)).strip() for i in (1, 2, 3)]
  record_id = _record_id(record, default_id)
  options = [correct] + wrong
  seed = int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big")
  random.Random(seed).shuffle(options)  # the same letters on every build, per question
  letter = answers.CHOICE_LETTERS[options.index(correct)]
  return {"id": record_id, "question": question, "answer": letter, "choices": options,
          "kind": "choice"}


def _mmlu_pro_example(record: Mapping[str, Any], where: str, default_id: str) -> dict[str, Any]:
  question = str(_field(record, ("question",), where)).strip()
  options = _field(record, ("options",), where)
  options = [str(o).strip() for o in (options.tolist() if hasattr(options, "tolist") else options)]
  _check_choices(options, where)
  letter = str(record.get("answer") or "").strip().upper()
  index = record.get("answer_index")
  if index is not None and letter and answers.CHOICE_LETTERS[int(index)] != letter:
    raise InputError(f"{where}: answer {letter!r} disagrees with answer_index {index}")
  if not letter:
    letter = answers.CHOICE_LETTERS[int(_field(record, ("answer_index",), where))]
  if letter not in answers.CHOICE_LETTERS[:len(options)]:
    raise InputError(f"{where}: answer {letter!r} is not one of the {len(options)} options")
  return {"id": _record_id(record, default_id), "question": question, "answer": letter,
          "choices": options, "kind": "choice"}


_MATH_FILES = (".jsonl", ".json", ".parquet")
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("math500", "math", _MATH_FILES, "HuggingFaceH4/MATH-500 test.jsonl", _math_example),
    Benchmark("aime24", "math", _MATH_FILES, "HuggingFaceH4/aime_2024 or Qwen2.5-Math "
              "data/aime24/test.jsonl", _math_example),
    Benchmark("aime25", "math", _MATH_FILES, "math-ai/aime25 or opencompass/AIME2025 jsonl",
              _math_example),
    Benchmark("amc23", "math", _MATH_FILES, "Qwen2.5-Math data/amc23/test.jsonl", _math_example),
    Benchmark("olympiadbench", "math", _MATH_FILES, "OlympiadBench OE_TO_maths_en_COMP "
              "(Qwen2.5-Math data/olympiadbench/test.jsonl)", _math_example),
    Benchmark("minerva_math", "math", _MATH_FILES, "Qwen2.5-Math data/minerva_math/test.jsonl",
              _math_example),
    Benchmark("gpqa_diamond", "choice", (".csv",), "Idavidrein/gpqa gpqa_diamond.csv",
              _gpqa_example),
    Benchmark("mmlu_pro", "choice", _MATH_FILES, "TIGER-Lab/MMLU-Pro test split (jsonl or the "
              "released parquet)", _mmlu_pro_example),
)}
NAMES = tuple(BENCHMARKS)


def _benchmark(name: str) -> Benchmark:
  if name not in BENCHMARKS:
    raise InputError(f"benchmark {name!r} is unknown; choose one of {list(NAMES)}")
  return BENCHMARKS[name]


def source_files(name: str, source_dir: str | os.PathLike) -> list[pathlib.Path]:
  """The files ``build`` reads for a benchmark; raises FileNotFoundError saying where they go."""
  benchmark = _benchmark(name)
  folder = pathlib.Path(source_dir).expanduser() / name
  files = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in benchmark.suffixes)
  if not files:
    raise FileNotFoundError(
        f"benchmark {name!r}: no {'/'.join(benchmark.suffixes)} file in {folder}; download "
        f"{benchmark.origin} and put it there (e.g. {folder / ('test' + benchmark.suffixes[0])})")
  return files


def _records(path: pathlib.Path) -> Iterator[tuple[Mapping[str, Any], str]]:
  """(record, 'file:line') for each record of a jsonl / json / csv / parquet file."""
  if path.suffix == ".jsonl":
    with open(path, encoding="utf-8") as f:
      for line_number, line in enumerate(f, 1):
        if line.strip():
          try:
            yield json.loads(line), f"{path}:{line_number}"
          except json.JSONDecodeError as e:
            raise InputError(f"{path}:{line_number}: not valid JSON ({e.msg})") from None
  elif path.suffix == ".json":
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    if not isinstance(data, list):
      raise InputError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for i, record in enumerate(data):
      yield record, f"{path}[{i}]"
  elif path.suffix == ".csv":
    with open(path, encoding="utf-8", newline="") as f:
      for row_number, row in enumerate(csv.DictReader(f), 2):
        yield row, f"{path}:{row_number}"
  else:
    import pyarrow.parquet as pq  # a TFDS dependency; imported only for parquet sources
    for i, record in enumerate(pq.read_table(path).to_pylist()):
      yield record, f"{path}[{i}]"


def read_examples(name: str, source_dir: str | os.PathLike) -> list[dict[str, Any]]:
  """The benchmark's examples straight from its source files (what the builder writes)."""
  benchmark = _benchmark(name)
  examples, seen = [], set()
  for path in source_files(name, source_dir):
    for index, (record, where) in enumerate(_records(path)):
      if not isinstance(record, Mapping):
        raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
      example = benchmark.to_example(record, where, f"{path.stem}-{index}")
      if example["id"] in seen:
        raise InputError(f"{where}: id {example['id']!r} appears twice in benchmark {name!r}")
      seen.add(example["id"])
      examples.append(example)
  if not examples:
    raise InputError(f"benchmark {name!r}: the files in {pathlib.Path(source_dir) / name} hold "
                     "no records")
  return examples


class ReasoningBenchmarks(tfds.core.GeneratorBasedBuilder):
  """Math and general-reasoning benchmarks, one config each, from manually placed files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=b.name, description=b.origin)
                     for b in BENCHMARKS.values()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put each benchmark's public file in <manual_dir>/<benchmark>/ (see "
      "spiral_jax/eval/datasets.py for the expected files and fields).")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default probes ``importlib_resources`` for builders inside a package; it is absent
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(  # built directly: dataset_info_from_configs needs metadata files
        builder=self,
        description="Reasoning benchmark problems: question, final answer, options (choice).",
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "question": tfds.features.Text(),
            "answer": tfds.features.Text(),
            "choices": tfds.features.Sequence(tfds.features.Text()),
            "kind": tfds.features.Text()}),
        disable_shuffling=True)  # keep the source order

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {SPLIT: self._generate_examples(pathlib.Path(dl_manager.manual_dir))}

  def _generate_examples(self, source_dir: pathlib.Path):
    for index, example in enumerate(read_examples(self.builder_config.name, source_dir)):
      yield index, example


def _builder(name: str, data_dir: str | os.PathLike) -> ReasoningBenchmarks:
  _benchmark(name)
  return ReasoningBenchmarks(config=name, data_dir=os.fspath(pathlib.Path(data_dir).expanduser()),
                             file_format="array_record")


def build(name: str, source_dir: str | os.PathLike, data_dir: str | os.PathLike,
          overwrite: bool = False) -> Any:
  """Builds benchmark ``name`` from ``<source_dir>/<name>/`` into ``data_dir`` and returns its
  random-access data source (``len()``, ``[i]``; text fields are bytes). Reuses a finished
  build unless ``overwrite``."""
  builder = _builder(name, data_dir)
  if overwrite or not builder.is_prepared():
    source_files(name, source_dir)  # a clear error before TFDS's own
    mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(pathlib.Path(source_dir).expanduser()), download_mode=mode))
  return builder.as_data_source(SPLIT)


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load(name: str, data_dir: str | os.PathLike, limit: int | None = None) -> list[dict[str, Any]]:
  """The built benchmark as ``[{id, question, answer, choices, kind}, ...]`` (str fields; choices
  is [] for math), in source order; ``limit`` keeps the first problems."""
  builder = _builder(name, data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(f"benchmark {name!r} is not built in {data_dir}; run spiral_jax.eval"
                            f".datasets.build({name!r}, source_dir, {str(data_dir)!r}) first")
  source = builder.as_data_source(SPLIT)
  count = len(source) if limit is None else min(limit, len(source))
  problems = []
  for i in range(count):
    row = source[i]
    problems.append({"id": _text(row["id"]), "question": _text(row["question"]),
                     "answer": _text(row["answer"]),
                     "choices": [_text(c) for c in row["choices"]], "kind": _text(row["kind"])})
  return problems


def build_all(names: Sequence[str], source_dir: str | os.PathLike,
              data_dir: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
  """Builds each benchmark and loads it: ``{name: problems}`` for ``evaluate_reasoning``."""
  out = {}
  for name in names:
    build(name, source_dir, data_dir)
    out[name] = load(name, data_dir)
  return out
