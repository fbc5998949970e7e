"""A stop signal reaching one process of a multi-process job stops every process after the same
step (``StopSignals.agreed``): a preemption notice may reach one host of a slice first, and a
process deciding alone would leave the others waiting in the next step's collectives."""
import json
import signal
import subprocess
import sys

from spiral_jax.run.signals import StopSignals
from tests.parallel.test_multihost import _env, _free_port

# Each process checks agreed() once per "step"; process 1 is sent SIGTERM before step 2 and
# process 0 never is. Both must report the same first stopping step.
WORKER = r"""
import json, signal, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
process, port = int(sys.argv[1]), sys.argv[2]
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=process)
from spiral_jax.run.signals import StopSignals
answers = []
with StopSignals() as stop:
  for step in range(5):
    if process == 1 and step == 2:
      signal.raise_signal(signal.SIGTERM)  # to this thread: handled before the next call
    answers.append(stop.agreed())
  print(json.dumps({"answers": answers, "name": stop.name}))
jax.distributed.shutdown()
"""


def test_a_signal_to_one_process_stops_both_after_the_same_step():
  port = _free_port()
  env = {**_env(), "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(p), str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for p in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
  for report in reports:  # not before the signal, and from then on every step
    assert report["answers"] == [False, False, True, True, True]
  assert reports[1]["name"] == "SIGTERM"
  assert reports[0]["name"] == "a stop signal to another process"


def test_one_process_agrees_with_itself():
  with StopSignals() as stop:
    assert not stop.agreed() and stop.name == ""
    signal.raise_signal(signal.SIGTERM)
    assert stop.agreed() and stop.name == "SIGTERM"
