"""Rollout shards and the multi-host helpers, in one process (8 fake devices)."""
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax.parallel import multihost
from spiral_jax.play import rollout


def test_shards_split_the_devices_in_order():
  assert multihost.resolve_shards(0) == jax.process_count() == 1
  groups = multihost.shard_devices(2)
  assert [[d.id for d in g] for g in groups] == [[0, 1, 2, 3], [4, 5, 6, 7]]
  assert multihost.local_shards(4) == [0, 1, 2, 3]  # one process runs every shard
  with pytest.raises(ValueError, match="rollout_shards=3 must divide the device count"):
    multihost.resolve_shards(3)


def test_put_and_place_give_the_host_values_on_their_shardings():
  mesh = mesh_lib.make_mesh()
  host = np.arange(16, dtype=np.int32).reshape(8, 2)
  split = NamedSharding(mesh, P("data"))
  x = multihost.put(host, split)
  assert x.sharding == split
  np.testing.assert_array_equal(np.asarray(x), host)
  tree = multihost.place({"a": host, "b": np.float32(3)},
                         {"a": split, "b": NamedSharding(mesh, P())})
  assert tree["b"].sharding.is_fully_replicated and float(tree["b"]) == 3.0
  assert multihost.place(tree, {"a": split, "b": NamedSharding(mesh, P())})["a"] is tree["a"]


def test_to_devices_copies_onto_a_shard_mesh():
  mesh = mesh_lib.make_mesh()
  x = jax.device_put(np.ones((4, 4), np.float32), NamedSharding(mesh, P()))
  sub = mesh_lib.make_mesh({"data": -1}, multihost.shard_devices(2)[1])
  y = multihost.to_devices({"w": x}, {"w": NamedSharding(sub, P())})["w"]
  assert {d.id for d in y.devices()} == {4, 5, 6, 7}
  np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
  assert multihost.gather_json({"moves": [1, 2]}) == [{"moves": [1, 2]}]


def test_a_rollout_crosses_processes_as_json_exactly():
  """What ``gather_json`` sends between processes (JSON bytes, no pickle) decodes to the same
  rollout: float32 returns, NaN advantages and the RAE baselines all exact."""
  part = _part([(0, 0), (1, 1)], 2, 7)
  part.moves[0].advantage, part.moves[1].advantage = float("nan"), 0.1 + 0.2
  part.moves[1].invalid = True
  part.games[0].returns[:] = np.float32(1 / 3), np.float32(-1e-30)
  part.transcripts, part.transcript_moves = [1], [part.moves[1]]
  baselines = np.random.default_rng(0).standard_normal((2, 1, 2)).astype(np.float32)
  sent = multihost.to_bytes([rollout.to_json(part), baselines])
  assert b"pickle" not in sent.tobytes() and sent.dtype == np.uint8
  got, got_baselines = multihost.from_bytes(sent)
  back = rollout.from_json(got)
  assert repr(back.moves) == repr(part.moves) and back.transcripts == [1]
  assert repr(back.transcript_moves) == repr(part.transcript_moves)
  for a, b in zip(back.games, part.games):
    assert a.returns.dtype == np.float32 and a.returns.tobytes() == b.returns.tobytes()
    assert (a.kind, a.forfeited_by, a.num_moves, a.learner_seats) == (
        b.kind, b.forfeited_by, b.num_moves, b.learner_seats)
  assert np.asarray(got_baselines, np.float32).tobytes() == baselines.tobytes()
  with pytest.raises(TypeError, match="not JSON data"):
    multihost.to_bytes({"x": object()})


def _part(kinds, num_games, chars):
  moves = [rollout.Move([1], [2], kind=k, seat=0, game=g, truncated=False, invalid=False,
                        response_text="x" * chars) for k, g in kinds]
  games = [rollout.FinishedGame(0, np.zeros(2, np.float32), -1, 2, (0, 1))
           for _ in range(num_games)]
  return rollout.Rollout(moves=moves, games=games, num_played_moves=len(moves),
                         response_chars=float(chars))


def test_merge_renumbers_games_and_groups_kinds():
  merged = rollout.merge([_part([(0, 0), (1, 1)], 2, 4), _part([(0, 0), (1, 2)], 3, 8)])
  assert [(m.kind, m.game) for m in merged.moves] == [(0, 0), (0, 2), (1, 1), (1, 4)]
  assert len(merged.games) == 5 and merged.num_played_moves == 4
  assert merged.response_chars == 6.0


def test_initialize_checks_its_flags_and_skips_single_host(monkeypatch):
  with pytest.raises(ValueError, match="num_processes"):
    multihost.initialize("localhost:1234")
  with pytest.raises(ValueError, match="process_id=2"):
    multihost.initialize("localhost:1234", num_processes=2, process_id=2)
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")  # a single-host TPU VM
  assert multihost.initialize() is False
