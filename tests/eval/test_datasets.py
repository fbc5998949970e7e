"""Each benchmark's sample file (invented problems in the public schema) builds with TFDS into
ArrayRecord and reads back unchanged."""
import json
import pathlib
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spiral_jax.eval import answers, datasets

DATA = pathlib.Path(__file__).parent / "data"
COUNTS = {"math500": 5, "aime24": 3, "aime25": 3, "amc23": 3, "olympiadbench": 3,
          "minerva_math": 3, "gpqa_diamond": 3, "mmlu_pro": 4}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.mark.parametrize("name", datasets.NAMES)
def test_build_and_load_round_trip(name, data_dir):
  source = datasets.build(name, DATA, data_dir)
  assert len(source) == COUNTS[name]
  assert isinstance(source[0]["question"], bytes)  # a TFDS data source: text comes back as bytes
  problems = datasets.load(name, data_dir)
  assert problems == datasets.read_examples(name, DATA)
  assert len({p["id"] for p in problems}) == len(problems)
  kind = datasets.BENCHMARKS[name].kind
  for p in problems:
    assert set(p) == {"id", "question", "answer", "choices", "kind"} and p["kind"] == kind
    assert p["question"] and p["answer"]
    if kind == "choice":
      assert p["answer"] in answers.CHOICE_LETTERS[:len(p["choices"])]
    else:
      assert p["choices"] == []
  assert (data_dir / "reasoning_benchmarks" / name / "1.0.0").is_dir()
  assert list((data_dir / "reasoning_benchmarks" / name / "1.0.0").glob("*.array_record*"))
  assert datasets.load(name, data_dir, limit=2) == problems[:2]


def test_fields_follow_each_public_format(data_dir):
  math500 = datasets.read_examples("math500", DATA)
  assert math500[0] == {"id": "test/prealgebra/9001.json", "answer": r"\frac{1}{2}",
                        "question": math500[0]["question"], "choices": [], "kind": "math"}
  assert [p["answer"] for p in datasets.read_examples("amc23", DATA)] == ["210", "8", "0.125"]
  aime25 = datasets.read_examples("aime25", DATA)  # two files, no id field: ids from file names
  assert [p["id"] for p in aime25] == ["aime2025-I-0", "aime2025-I-1", "aime2025-II-0"]
  olympiad = datasets.read_examples("olympiadbench", DATA)
  assert [p["answer"] for p in olympiad] == ["3", "-2, 2", r"4 \pi"]
  assert olympiad[2]["question"].startswith("A circle has radius $2$.\n\nCompute")  # context
  minerva = datasets.read_examples("minerva_math", DATA)  # answers come from the solution's box
  assert [p["answer"] for p in minerva] == ["75", "6.6e-19", r"\frac{1}{8}"]
  mmlu = datasets.read_examples("mmlu_pro", DATA)
  assert mmlu[1]["choices"][3] == "Mercury" and mmlu[1]["answer"] == "D"
  assert len(mmlu[3]["choices"]) == 4


def test_gpqa_options_are_shuffled_deterministically_per_question():
  problems = datasets.read_examples("gpqa_diamond", DATA)
  correct = ["Nitrogen", "1", "Mitochondrion"]
  for problem, text in zip(problems, correct):
    letter_index = answers.CHOICE_LETTERS.index(problem["answer"])
    assert problem["choices"][letter_index] == text
    assert all(c == c.strip() for c in problem["choices"])  # "Argon\n" comes back stripped
  assert [p["answer"] for p in problems] == ["A", "C", "A"]  # fixed by the Record IDs' hashes
  assert problems == datasets.read_examples("gpqa_diamond", DATA)


def test_build_all(data_dir):
  problems = datasets.build_all(["amc23", "mmlu_pro"], DATA, data_dir)
  assert {k: len(v) for k, v in problems.items()} == {"amc23": 3, "mmlu_pro": 4}


def test_rebuild_only_when_asked(tmp_path):
  shutil.copytree(DATA / "aime24", tmp_path / "src" / "aime24")
  datasets.build("aime24", tmp_path / "src", tmp_path / "tfds")
  lines = (tmp_path / "src" / "aime24" / "test.jsonl").read_text().splitlines()
  (tmp_path / "src" / "aime24" / "test.jsonl").write_text(lines[0] + "\n")
  assert len(datasets.build("aime24", tmp_path / "src", tmp_path / "tfds")) == 3  # reused
  assert len(datasets.build("aime24", tmp_path / "src", tmp_path / "tfds", overwrite=True)) == 1
  shutil.rmtree(tmp_path / "src")  # a finished build needs no source files
  assert [p["answer"] for p in datasets.load("aime24", tmp_path / "tfds")] == ["30"]


def test_parquet_source_equals_jsonl(tmp_path):
  rows = [json.loads(line) for line in (DATA / "mmlu_pro" / "test.jsonl").read_text().splitlines()]
  (tmp_path / "mmlu_pro").mkdir()
  pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mmlu_pro" / "test-00000.parquet")
  assert datasets.read_examples("mmlu_pro", tmp_path) == datasets.read_examples("mmlu_pro", DATA)


def test_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"math500.*no .*jsonl.*MATH-500"):
    datasets.build("math500", tmp_path, tmp_path / "tfds")
  with pytest.raises(ValueError, match="unknown"):
    datasets.build("gsm8k", DATA, tmp_path / "tfds")
  with pytest.raises(FileNotFoundError, match="not built.*build\\('aime24'"):
    datasets.load("aime24", tmp_path / "empty")
  (tmp_path / "amc23").mkdir()
  (tmp_path / "amc23" / "test.jsonl").write_text('{"id": 0, "prompt": "x", "answer": 1}\n')
  with pytest.raises(ValueError, match=r"test.jsonl:1: no field problem / question"):
    datasets.read_examples("amc23", tmp_path)
  shutil.copytree(DATA / "math500", tmp_path / "math500")
  with open(tmp_path / "math500" / "test.jsonl", "a") as f:
    f.write('{"problem": "again", "answer": "1", "unique_id": "test/algebra/9002.json"}\n')
  with pytest.raises(ValueError, match="appears twice"):
    datasets.read_examples("math500", tmp_path)
