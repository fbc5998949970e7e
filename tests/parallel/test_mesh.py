"""make_mesh and the logical-axis rules (8 fake CPU devices from tests/conftest.py)."""
import jax
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from spiral_jax.model import Policy, preset
from spiral_jax.parallel import mesh as mesh_lib


def test_make_mesh_is_auto_and_fills_one_axis():
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": -1, "tensor": 2})
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert all(t == AxisType.Auto for t in mesh.axis_types)
  assert dict(mesh_lib.make_mesh().shape) == {"data": 8, "fsdp": 1, "tensor": 1}
  assert mesh_lib.make_mesh({"tensor": 2}, devices=jax.devices()[:2]).devices.size == 2


@pytest.mark.parametrize("shape, message", [
    ({"data": 3, "fsdp": 2}, "3x2x1 must equal the 8 devices"),
    ({"data": -1, "fsdp": -1}, "at most one may be -1"),
    ({"model": 8}, "unknown axes"),
    ({"data": 3, "fsdp": -1}, "do not divide"),
])
def test_make_mesh_rejects_bad_shapes(shape, message):
  with pytest.raises(ValueError, match=message):
    mesh_lib.make_mesh(shape)


def test_rules_shard_weights_for_training_and_replicate_fsdp_for_sampling():
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  train, sample = mesh_lib.TRAIN_RULES, mesh_lib.SAMPLE_RULES
  assert mesh_lib.logical_to_spec(("embed", "mlp"), train, mesh) == P("fsdp", "tensor")
  assert mesh_lib.logical_to_spec(("embed", "mlp"), sample, mesh) == P(None, "tensor")
  assert mesh_lib.logical_to_spec(("batch", None), train, mesh) == P(("data", "fsdp"), None)
  assert mesh_lib.logical_to_spec(("norm",), train, mesh) == P(None)
  # 3 KV heads do not split 2 ways: that dim stays replicated instead of failing
  assert mesh_lib.logical_to_spec(("embed", "kv_heads"), train, mesh, (8, 3)) == P("fsdp", None)
  # size-1 mesh axes are dropped, so the same rules serve a single device
  one = mesh_lib.make_mesh({"data": 8})
  assert mesh_lib.logical_to_spec(("embed", "mlp"), train, one) == P(None, None)
  assert mesh_lib.batch_divisor(mesh, sample) == 4 and mesh_lib.batch_divisor(one, sample) == 8
  tree = {"w": ("embed", "vocab"), "b": P("batch")}
  shardings = mesh_lib.logical_to_sharding(tree, mesh, train)
  assert shardings["w"].spec == P("fsdp", "tensor") and shardings["b"].spec == P(("data", "fsdp"))


def test_shard_params_puts_each_weight_on_its_shards():
  config = preset("tiny", vocab_size=64, d_model=32, num_layers=1, num_heads=4, num_kv_heads=2,
                  head_dim=8, mlp_dim=64)
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  policy = Policy.init(config, None, key=0, mesh=mesh)  # created directly on TRAIN_RULES shards
  gate = policy.params["layers"][0]["mlp"]["gate_proj"]["kernel"].get_value()
  assert gate.sharding.spec == P("fsdp", "tensor")
  assert gate.addressable_shards[0].data.shape == (16, 32)
  sampled = mesh_lib.shard_params(policy.params, mesh, mesh_lib.SAMPLE_RULES)
  gate_s = sampled["layers"][0]["mlp"]["gate_proj"]["kernel"].get_value()
  assert gate_s.addressable_shards[0].data.shape == (32, 32)
  np.testing.assert_array_equal(np.asarray(gate_s), np.asarray(gate))
  single = Policy.init(config, None, key=0)
  np.testing.assert_array_equal(
      np.asarray(single.params["layers"][0]["mlp"]["gate_proj"]["kernel"].get_value()),
      np.asarray(gate))
