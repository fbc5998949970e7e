"""Evaluation's sampler calls are bounded by the memory plan by default (``eval.games_per_batch=0``,
``memory.rows_that_fit``), never "all games at once": the default evaluation of 1024 games runs
under a kernel-enforced memory limit that the same evaluation with all games at once exceeds."""
import json
import subprocess
import sys

import jax

from spiral_jax import memory
from spiral_jax.model import config as model_config
from tests.parallel.test_multihost import _env

# A 1-layer d64 policy evaluated on 1024 Kuhn games after the run's setup (tokenizer, policy).
# The address-space limit is set in the process itself once set-up is done: what it had mapped
# then, plus ALLOWANCE_MIB. Measured on 2 cores (MALLOC_ARENA_MAX=2 keeps glibc from reserving
# 64 MiB per thread): the plan-bounded evaluation (8 rows a call within a 512 MiB sampling budget)
# maps ~0.5 GiB more at its peak; all 1024 games at once allocate one 1.9 GB buffer, so 1.5 GiB
# leaves ~1 GiB on each side of what both need.
ALLOWANCE_MIB = 1536
WORKER = r"""
import json, resource, sys, tempfile
games, per_batch, allowance = (int(a) for a in sys.argv[1:4])
from spiral_jax import memory
memory.HOST_SAMPLER_BYTES = 512 << 20  # this host's sampling budget: small, so rows < games
import jax
from spiral_jax.eval import suites
from spiral_jax.run.setup import RunSetup
from tests.run.test_trainer import tiny_config
cfg = tiny_config(eval__games=games, eval__games_per_batch=per_batch, warm_start__steps=0,
                  model_overrides=dict(num_layers=1, d_model=64, num_heads=4, num_kv_heads=2,
                                       head_dim=16, mlp_dim=128, max_seq_len=1024))
setup = RunSetup(cfg, tempfile.mkdtemp(), progress=False)
mapped = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
limit = mapped + (allowance << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
report = suites.Evaluator(cfg).run(setup.policy, jax.random.key(0))
played = report.arena["KuhnPoker-v1"]["random"].overall.games
print(json.dumps({"rows": report.settings["games_per_batch"], "played": played}))
"""


def _evaluate(games_per_batch: int) -> subprocess.CompletedProcess:
  env = {**_env(), "JAX_PLATFORMS": "cpu", "MALLOC_ARENA_MAX": "2"}
  return subprocess.run([sys.executable, "-c", WORKER, "1024", str(games_per_batch),
                         str(ALLOWANCE_MIB)], env=env, capture_output=True, text=True,
                        timeout=600)


def test_the_default_evaluation_runs_under_a_memory_limit_all_at_once_does_not():
  bounded = _evaluate(0)
  assert bounded.returncode == 0, bounded.stderr[-3000:]
  report = json.loads(bounded.stdout.strip().splitlines()[-1])
  assert report == {"rows": 8, "played": 1024}
  at_once = _evaluate(1024)
  assert at_once.returncode != 0 and "Out of memory" in at_once.stderr, at_once.stderr[-3000:]


def test_rows_that_fit_are_the_largest_padded_count_the_plan_allows():
  model = model_config.preset("tiny", num_layers=2, d_model=128, num_heads=4, num_kv_heads=2,
                              head_dim=32, mlp_dim=256, vocab_size=512, max_seq_len=1024)
  topo = memory.Topology("cpu", 1, 2 << 30, "cpu")
  mesh = {"data": 1, "fsdp": 1, "tensor": 1}
  rows = memory.rows_that_fit(model, mesh, 1000, 24, 4096, topo)
  work = memory.Workload(batch_size=1, micro_batch=1, learner_tokens=16, sampler_rows=4096,
                         prompt_slots=1024, new_slots=32)
  assert 1 < rows < 4096
  assert memory.estimate(model, work, mesh, topo, rows_per_call=rows).sampler_fits
  assert not memory.estimate(model, work, mesh, topo, rows_per_call=2 * rows).sampler_fits
  assert memory.rows_that_fit(model, mesh, 1000, 24, 3, topo) == 3  # few rows: all of them
  tiny = memory.Topology("cpu", 1, 1 << 20, "cpu")  # not even one row fits: one per shard
  assert memory.rows_that_fit(model, {**mesh, "data": 4}, 1000, 24, 64, tiny) == 4


def test_the_local_cpu_devices_split_the_host_budget():
  topo = memory.local_topology()  # the 8 fake CPU devices of tests/conftest.py
  assert (topo.platform, topo.devices) == ("cpu", jax.local_device_count())
  assert topo.hbm_bytes == memory.HOST_SAMPLER_BYTES // jax.local_device_count()
