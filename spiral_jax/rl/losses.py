"""Policy-gradient losses chosen by name, and how token losses are aggregated.

Shapes: B samples, T response tokens. ``logp``/``old_logp``/``ref_logp`` are per-token log-probs of
the response under the current, the pre-update ("old") and a frozen reference policy; ``mask`` marks
real response tokens; ``weight`` marks samples that count (padding and zero-advantage samples are 0).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Loss settings; SPIRAL's are the defaults (PPO clip 0.2, Dr.GRPO sum over 4096, no KL)."""
  name: str = "ppo_clip"
  clip_eps: float = 0.2
  aggregation: str = "drgrpo"
  drgrpo_constant: float = 4096.0  # the maximum response length in the reference
  kl_beta: float = 0.0

  @property
  def needs_reference(self) -> bool:
    """A KL penalty needs the frozen reference policy's log-probs."""
    return self.kl_beta > 0

  def __post_init__(self):
    if self.name not in TOKEN_LOSSES:
      raise ValueError(f"loss.name={self.name!r} is unknown; choose one of {sorted(TOKEN_LOSSES)}")
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f"loss.aggregation={self.aggregation!r} is unknown; choose one of "
                       f"{sorted(AGGREGATIONS)}")
    if not self.clip_eps > 0:
      raise ValueError(f"loss.clip_eps={self.clip_eps} must be positive, e.g. 0.2")
    if not self.drgrpo_constant > 0:
      raise ValueError(f"loss.drgrpo_constant={self.drgrpo_constant} must be positive, e.g. the "
                       "maximum response length")
    if self.kl_beta < 0:
      raise ValueError(f"loss.kl_beta={self.kl_beta} must be >= 0 (0 disables the KL penalty)")


def ppo_clip(logp, old_logp, advantage, cfg: LossConfig):
  """f32[B, T]: the clipped surrogate, negated; ratio exactly 1 when logp == old_logp."""
  ratio = jnp.exp(logp - old_logp)
  adv = advantage[:, None]
  clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
  return -jnp.minimum(ratio * adv, clipped * adv)


def reinforce(logp, old_logp, advantage, cfg: LossConfig):
  """f32[B, T]: -A * log pi (old_logp unused)."""
  del old_logp, cfg
  return -advantage[:, None] * logp


TOKEN_LOSSES: dict[str, Callable] = {"ppo_clip": ppo_clip, "reinforce": reinforce}


# Each aggregation returns (numerator, denominator): micro-batches add numerators and divide by
# the whole batch's denominator, so gradient accumulation gives exactly the full-batch loss.
def _drgrpo(token_loss, mask, weight, cfg):
  per_sample = (token_loss * mask).sum(-1) / cfg.drgrpo_constant
  return (per_sample * weight).sum(), weight.sum()


def _token_mean(token_loss, mask, weight, cfg):
  del cfg
  m = mask * weight[:, None]
  return (token_loss * m).sum(), m.sum()


def _sample_mean(token_loss, mask, weight, cfg):
  del cfg
  per_sample = (token_loss * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)
  return (per_sample * weight).sum(), weight.sum()


AGGREGATIONS: dict[str, Callable] = {
    "drgrpo": _drgrpo, "token_mean": _token_mean, "sample_mean": _sample_mean}


def denominator(cfg: "LossConfig", mask, weight) -> jax.Array:
  """The batch-wide normaliser of ``cfg.aggregation`` (at least 1, so empty batches give 0)."""
  _, den = AGGREGATIONS[cfg.aggregation](jnp.zeros_like(mask, jnp.float32),
                                         mask.astype(jnp.float32), weight.astype(jnp.float32), cfg)
  return jnp.maximum(den, 1.0)


def kl_k3(logp, ref_logp):
  """f32[B, T]: the non-negative k3 estimator of KL(pi || pi_ref) per token."""
  delta = ref_logp - logp
  return jnp.exp(delta) - delta - 1.0


def policy_loss(cfg: LossConfig, logp, old_logp, advantage, mask, weight, ref_logp=None,
                denom=None):
  """The scalar loss and its metrics.

  Args: logp, old_logp, ref_logp f32[B, T]; advantage f32[B]; mask f32[B, T]; weight f32[B];
    denom: the batch-wide normaliser when this is one micro-batch of a larger batch
    (``denominator(cfg, full_mask, full_weight)``); by default this batch's own.
  """
  mask = mask.astype(jnp.float32)
  weight = weight.astype(jnp.float32)
  if denom is None:
    denom = denominator(cfg, mask, weight)
  token_loss = TOKEN_LOSSES[cfg.name](logp, jax.lax.stop_gradient(old_logp), advantage, cfg)
  aggregate = AGGREGATIONS[cfg.aggregation]
  loss = aggregate(token_loss, mask, weight, cfg)[0] / denom
  m = mask * weight[:, None]
  log_ratio = jax.lax.stop_gradient(logp - old_logp)
  ratio = jnp.exp(logp - old_logp)
  metrics = {  # sums over tokens; the caller divides by the token count
      "pg_loss": loss,
      "ratio_sum": (ratio * m).sum(),
      "clipped_tokens": ((jnp.abs(ratio - 1.0) > cfg.clip_eps) * m).sum(),
      "tokens": m.sum(),
      # extremes over trained tokens (the caller reduces these by min/max, not by sum)
      "log_ratio_min": jnp.where(m > 0, log_ratio, jnp.inf).min(),
      "log_ratio_max": jnp.where(m > 0, log_ratio, -jnp.inf).max(),
  }
  if cfg.kl_beta > 0:
    if ref_logp is None:
      raise ValueError("loss.kl_beta > 0 needs reference log-probs (ref_logp)")
    kl = aggregate(kl_k3(logp, jax.lax.stop_gradient(ref_logp)), mask, weight, cfg)[0] / denom
    loss = loss + cfg.kl_beta * kl
    metrics["kl"] = kl
  return loss, metrics
