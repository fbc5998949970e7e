"""The learner: one pure, jitted policy update over a batch of move-samples.

``train_step(state, batch) -> (state, metrics)`` trains on the batch's samples with their
advantages (computed on the host with the RAE fold before the zero-advantage filter and the draw,
``rl/rae.py``) and takes the fold's new baselines, running ``rl.epochs`` optimizer steps (PPO),
each accumulating gradients over micro-batches. The "old" log-probs are the
first epoch's own forward pass under the pre-update parameters, so they cost no extra pass and the
PPO ratio is exactly 1 on the first epoch.

Non-finite guard. An optimizer step (one per epoch; its micro-batches accumulate into one update)
whose loss or gradient global norm is NaN or infinite is skipped: parameters and optimizer state
keep their values bit for bit (Adam's count and the schedule do not advance). Non-finite RAE
baselines or advantages (non-finite returns) skip every update of the step. The fold's baselines
are committed only when no update was skipped, so a bad batch never reaches the baselines.
``metrics["nonfinite"]`` counts the skipped updates (0..epochs); ``state.step`` still advances, so
the next step's rollout keys differ and a retry is not the same batch. A gradient whose global norm overflows float32
(about 1e19) counts as non-finite.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from spiral_jax.games.core import tree_select
from spiral_jax.rl import losses, rae

# (params, prefix, prefix_mask, row_prefix, tokens, input_mask) -> (logp, entropy), both f32[B, L]:
# entry t scores token t given the row's prefix and tokens < t (temperature-scaled logits), and the
# entropy of the distribution that produced it (see rl/logprobs.py).
LogprobFn = Callable[..., tuple[jax.Array, jax.Array]]


@struct.dataclass
class TrainState:
  """Everything that changes during training; Orbax saves it whole."""
  step: jax.Array          # i32[] policy steps done
  params: Any
  opt_state: Any
  rae: jax.Array           # f32[groups, num_game_kinds, 2] RAE baselines
  rng: jax.Array           # the run's base key; step keys are fold_in(rng, step)


@struct.dataclass
class TrainBatch:
  """A fixed-shape batch: B samples in groups sharing a prompt prefix.

  prefix:        i32[N, P] each group's shared prompt prefix, left-padded
  prefix_mask:   bool[N, P] real prefix tokens
  row_prefix:    i32[B] the group of each sample
  tokens:        i32[B, L] each sample's prompt tail then response, right-padded
  input_mask:    bool[B, L] real tokens
  loss_mask:     f32[B, L] response tokens (the ones trained on)
  advantage:     f32[B] each sample's advantage (its seat's RAE advantage in its game)
  sample_valid:  bool[B] False for padding rows
  baselines:     f32[groups, kinds, 2] the RAE baselines after this step's games were folded
  """
  prefix: jax.Array
  prefix_mask: jax.Array
  row_prefix: jax.Array
  tokens: jax.Array
  input_mask: jax.Array
  loss_mask: jax.Array
  advantage: jax.Array
  sample_valid: jax.Array
  baselines: jax.Array


def make_optimizer(optim, total_updates: int) -> optax.GradientTransformation:
  """Clip by global norm, then Adam(W) with betas and a schedule (``config.OptimConfig``)."""
  if optim.schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, optim.learning_rate, optim.warmup_steps,
                                            max(total_updates, optim.warmup_steps + 1))
  elif optim.warmup_steps:
    lr = optax.linear_schedule(0.0, optim.learning_rate, optim.warmup_steps)
  else:
    lr = optim.learning_rate
  return optax.chain(optax.clip_by_global_norm(optim.clip_norm),
                     optax.adamw(lr, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay))


def init_state(params, tx: optax.GradientTransformation, num_game_kinds: int,
               seed: int, rae_groups: int = 1) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rae=rae.init(num_game_kinds, rae_groups),
                    rng=jax.random.key_data(jax.random.key(seed)))


def _micro_batches(tree, n: int):
  """Splits the leading axis B into [n, B // n], interleaved: micro-batch i takes rows i, i + n,
  ... so each device holds an equal share of every micro-batch (a contiguous split would put
  each on a few devices and save no memory)."""
  return jax.tree.map(lambda x: x.reshape((x.shape[0] // n, n) + x.shape[1:]).swapaxes(0, 1),
                      tree)


def _rows(x: jax.Array) -> jax.Array:
  """Undoes ``_micro_batches``: [n, B // n, ...] -> [B, ...] in the batch's row order."""
  return x.swapaxes(0, 1).reshape((-1,) + x.shape[2:])


def make_train_step(logprob_fn: LogprobFn, tx: optax.GradientTransformation,
                    loss_cfg: losses.LossConfig, *, epochs: int = 2, num_micro_batches: int = 1,
                    skip_nonfinite: bool = True):
  """Returns the pure ``train_step(state, batch) -> (state, metrics)``; jit it with shardings.

  ``skip_nonfinite``: skip updates with a non-finite loss or gradient (see the module docstring);
  False applies every update as computed (NaNs included), for debugging.
  """

  def train_step(state: TrainState, batch: TrainBatch, ref_params=None):
    """``ref_params``: the frozen reference policy's parameters, needed when ``loss_cfg.kl_beta``
    is positive (a KL penalty keeps the policy near it)."""
    if loss_cfg.needs_reference and ref_params is None:
      raise ValueError("loss.kl_beta > 0 needs ref_params (the frozen reference policy)")
    baselines = batch.baselines
    weight = batch.sample_valid.astype(jnp.float32)
    advantage = jnp.where(batch.sample_valid, batch.advantage, 0.0)  # padding rows may hold NaN
    loss_mask = batch.loss_mask * batch.input_mask
    denom = losses.denominator(loss_cfg, loss_mask, weight)
    per_sample = (batch.row_prefix, batch.tokens, batch.input_mask, loss_mask, advantage, weight)
    baselines_finite = jnp.all(jnp.isfinite(baselines)) & jnp.all(jnp.isfinite(advantage))

    def micro_loss(params, mb, old_logp, ref_logp):
      row_prefix, tokens, input_mask, mask, adv, w = mb
      logp, entropy = logprob_fn(params, batch.prefix, batch.prefix_mask, row_prefix, tokens,
                                 input_mask)
      old = jax.lax.stop_gradient(logp) if old_logp is None else old_logp
      loss, m = losses.policy_loss(loss_cfg, logp, old, adv, mask, w, ref_logp, denom=denom)
      m["objective"] = loss  # the micro-batch's share of the loss optimised (KL term included)
      m["entropy_sum"] = (jax.lax.stop_gradient(entropy) * mask * w[:, None]).sum()
      return loss, (m, jax.lax.stop_gradient(logp))

    grad_fn = jax.grad(micro_loss, has_aux=True)

    mbs = _micro_batches(per_sample, num_micro_batches)
    refs = None
    if loss_cfg.needs_reference:  # the frozen reference scores the batch once, not once per epoch
      def ref_pass(_, mb):
        row_prefix, tokens, input_mask = mb[:3]
        return None, logprob_fn(ref_params, batch.prefix, batch.prefix_mask, row_prefix, tokens,
                                input_mask)[0]
      refs = jax.lax.stop_gradient(jax.lax.scan(ref_pass, None, mbs)[1])

    def run_epoch(params, opt_state, old_logp):
      def accumulate(grads, xs):
        mb, old, ref = xs
        g, (m, logp) = grad_fn(params, mb, old, ref)
        return jax.tree.map(jnp.add, grads, g), (m, logp)

      zeros = jax.tree.map(jnp.zeros_like, params)
      olds = None if old_logp is None else _micro_batches(old_logp, num_micro_batches)
      grads, (m, logp) = jax.lax.scan(accumulate, zeros, (mbs, olds, refs))
      updates, new_opt_state = tx.update(grads, opt_state, params)
      new_params = optax.apply_updates(params, updates)
      m = {k: v.min() if k.endswith("_min") else v.max() if k.endswith("_max") else v.sum()
           for k, v in m.items()}  # over micro-batches
      m["grad_norm"] = optax.global_norm(grads)
      finite = baselines_finite & jnp.isfinite(m.pop("objective")) & jnp.isfinite(m["grad_norm"])
      if skip_nonfinite:
        new_params = tree_select(finite, new_params, params)
        new_opt_state = tree_select(finite, new_opt_state, opt_state)
      m["skipped"] = (~finite).astype(jnp.int32)
      return new_params, new_opt_state, _rows(logp), m

    params, opt_state = state.params, state.opt_state
    old_logp, epoch_metrics = None, []
    for _ in range(epochs):
      params, opt_state, logp, m = run_epoch(params, opt_state, old_logp)
      old_logp = logp if old_logp is None else old_logp
      epoch_metrics.append(m)

    first, last = epoch_metrics[0], epoch_metrics[-1]
    tokens = jnp.maximum(first["tokens"], 1.0)
    kept = weight.sum()
    response_tokens = (loss_mask.sum(-1) * batch.sample_valid).sum()
    metrics = {
        "loss": first["pg_loss"],
        "grad_norm": first["grad_norm"],
        "entropy": first["entropy_sum"] / tokens,
        "ratio_first_epoch": first["ratio_sum"] / tokens,
        "ratio_last_epoch": last["ratio_sum"] / tokens,
        "clip_frac": last["clipped_tokens"] / tokens,
        "log_ratio_min": last["log_ratio_min"],  # the first epoch's ratio is exactly 1
        "log_ratio_max": last["log_ratio_max"],
        "kept_samples": kept,
        "advantage_mean": (advantage * weight).sum() / jnp.maximum(kept, 1.0),
        "advantage_abs_mean": (jnp.abs(advantage) * weight).sum() / jnp.maximum(kept, 1.0),
        "advantage_min": jnp.where(batch.sample_valid, advantage, jnp.inf).min(),
        "advantage_max": jnp.where(batch.sample_valid, advantage, -jnp.inf).max(),
        "response_tokens_mean": response_tokens / jnp.maximum(batch.sample_valid.sum(), 1),
    }
    if "kl" in first:
      metrics["kl"] = first["kl"]
    skipped = sum(m["skipped"] for m in epoch_metrics)
    metrics["nonfinite"] = skipped
    if skip_nonfinite:  # a step that skipped any update leaves the baselines as they were
      baselines = jnp.where(skipped == 0, baselines, state.rae)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              rae=baselines)
    return new_state, metrics

  return train_step


def state_shardings(state: TrainState, mesh) -> TrainState:
  """The shardings the state's arrays already have on ``mesh`` (parameters placed by the logical
  rules, optimizer moments following them); anything else (step, RAE baselines, key) replicated."""
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def sharding(x):
    s = getattr(x, "sharding", None)
    return s if isinstance(s, jax.sharding.NamedSharding) and s.mesh == mesh else replicated

  return jax.tree.map(sharding, state)


def batch_shardings(mesh, rules) -> TrainBatch:
  """Per-sample arrays split over the batch axes; prefixes and baselines replicated."""
  from spiral_jax.parallel import mesh as mesh_lib
  split = lambda ndim: jax.sharding.NamedSharding(mesh, mesh_lib.batch_spec(rules, ndim))
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return TrainBatch(prefix=rep, prefix_mask=rep, row_prefix=split(1), tokens=split(2),
                    input_mask=split(2), loss_mask=split(2), advantage=split(1),
                    sample_valid=split(1), baselines=rep)


def jit_train_step(train_step, state: TrainState, mesh, rules, with_reference: bool = False):
  """``train_step`` jitted with explicit shardings and the state donated; returns it with the state
  placed on those shardings. ``with_reference``: the jitted function takes ``(state, batch,
  ref_params)`` (for a KL penalty), else ``(state, batch)``."""
  s_shard = state_shardings(state, mesh)
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  in_shardings = (s_shard, batch_shardings(mesh, rules))
  if with_reference:
    in_shardings += (s_shard.params,)
  fn = jax.jit(train_step, in_shardings=in_shardings, out_shardings=(s_shard, rep),
               donate_argnums=0)
  if jax.process_count() == 1:
    return fn, jax.device_put(state, s_shard)
  from spiral_jax.parallel import multihost  # several processes: host data needs placing
  b_shard = in_shardings[1]

  def call(state, batch, *ref):  # every process holds the whole host batch; each puts its rows
    batch = multihost.put_tree(batch, b_shard) if isinstance(batch.tokens, np.ndarray) else batch
    return fn(state, batch, *ref)

  call.lower = fn.lower
  return call, multihost.place(state, s_shard)
