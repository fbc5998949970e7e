"""Test session set-up: 8 fake CPU devices (before jax is imported) and no network for HF."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (imported after XLA_FLAGS on purpose)

assert jax.device_count() == 8, "tests expect 8 fake CPU devices; is jax imported before conftest?"
