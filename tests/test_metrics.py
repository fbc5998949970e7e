"""metrics.jsonl after a crash: a last line cut short by a killed write is left out (with a
warning) when read and removed when a run resumes; a bad line elsewhere is an error naming it."""
import json
import logging

import pytest

from spiral_jax import metrics as metrics_lib
from spiral_jax.errors import InputError


def _write(workdir, steps):
  writer = metrics_lib.MetricsWriter(str(workdir), tensorboard=False)
  for step in steps:
    writer.write(step, {"train/loss": step / 3})
  writer.close()


def test_a_cut_short_last_line_is_left_out_and_dropped_on_resume(tmp_path, caplog):
  _write(tmp_path, [1, 2, 3])
  path = tmp_path / "metrics.jsonl"
  whole = path.read_text()
  path.write_text(whole + whole.splitlines()[-1][:9])  # a 4th write killed after 9 bytes
  with caplog.at_level(logging.WARNING):
    rows = metrics_lib.read(str(tmp_path))
  assert [r["step"] for r in rows] == [1, 2, 3] and "the last line is cut short" in caplog.text
  writer = metrics_lib.MetricsWriter(str(tmp_path), resume_step=2, tensorboard=False)
  writer.write(3, {"train/loss": 1.0})  # the resumed run's step 3
  assert path.read_text() == "".join(whole.splitlines(True)[:2]) + json.dumps(
      {"step": 3, "train/loss": 1.0}) + "\n"


def test_a_bad_line_before_the_last_names_the_file_and_line(tmp_path):
  _write(tmp_path, [1, 2])
  path = tmp_path / "metrics.jsonl"
  lines = path.read_text().splitlines(True)
  path.write_text(lines[0][:5] + "\n" + lines[1])
  with pytest.raises(InputError, match=r"metrics.jsonl:1 is not JSON .*fix or delete that line"):
    metrics_lib.read(str(tmp_path))
