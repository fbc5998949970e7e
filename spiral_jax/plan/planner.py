"""The per-device memory plan of a training config on a topology (``python -m spiral_jax.plan``).

``run(config_dict, topology)`` returns the table and, when a phase does not fit, the refusal that
names what to change; ``resolve`` and ``workload`` turn a config into the model and the sizes the
trainer will use; the estimates themselves are ``spiral_jax/memory.py``.
"""
from __future__ import annotations

import dataclasses
import os
import re

from spiral_jax import config as config_lib
from spiral_jax.errors import InputError
from spiral_jax.model import config as model_config
from spiral_jax.model import hf
from spiral_jax.parallel import mesh as mesh_lib
from spiral_jax import memory
from spiral_jax.rl import batching
from spiral_jax.sampling.prefixes import bucket

GIB = 1 << 30


def _preset_name(folder: str) -> str:
  """``/data/Qwen3-4B-Base`` -> ``qwen3_4b_base``."""
  return re.sub(r"[-.]", "_", os.path.basename(os.path.normpath(folder)).lower())


def resolve(cd) -> tuple[config_lib.TrainConfig, model_config.ModelConfig, str]:
  """(TrainConfig, ModelConfig, note) for a config dict, without weights or tokenizer files.

  A missing model folder is replaced by the preset of its name, and a missing tokenizer folder by
  the in-process tokenizer, so the rest of the config is validated as the trainer would.
  """
  d = cd.to_dict() if hasattr(cd, "to_dict") else dict(cd)
  model, note = d.get("model", "tiny"), ""
  own_vocab = model in model_config.PRESETS and d.get("tokenizer") in (None, "games_sentencepiece")
  if model not in model_config.PRESETS and not os.path.isdir(model):
    name = _preset_name(model)
    if name not in model_config.PRESETS:
      raise InputError(f"model={model!r} is not a folder on this machine and {name!r} is not a "
                       f"preset ({sorted(model_config.PRESETS)}); pass --config.model=<preset>")
    d["model"], note = name, f"model={model} is not a folder here: shapes of the preset {name!r}"
  if d.get("tokenizer", "games_sentencepiece") != "games_sentencepiece" and not os.path.isdir(
      d["tokenizer"]):
    d["tokenizer"] = "games_sentencepiece"  # shapes need no tokenizer
  cfg = config_lib.from_config_dict(d)
  dtypes = {"param_dtype": cfg.param_dtype, "dtype": cfg.compute_dtype}
  overrides = dict(cfg.model_overrides)
  if os.path.isdir(cfg.model):
    mc = model_config.ModelConfig.from_hf_config(hf.read_config(cfg.model),
                                                 **{**dtypes, **overrides})
  else:
    vocab = {"vocab_size": cfg.vocab_size} if own_vocab else {}
    mc = model_config.preset(cfg.model, **{**vocab, **dtypes, **overrides})
  return cfg, mc, note


def workload(cfg: config_lib.TrainConfig) -> memory.Workload:
  """The sizes the trainer will use (``rl/batching`` and ``sampling/sampler`` padding rules)."""
  s = cfg.sampling
  return memory.Workload(
      batch_size=cfg.batch_size, micro_batch=cfg.micro_batch,
      learner_tokens=bucket(cfg.max_prompt_tokens + s.max_new_tokens, minimum=16,
                            step=batching.SUFFIX_STEP),
      # one turn: every unfinished game of every kind whose mover is the learner
      sampler_rows=cfg.games_per_round * len(cfg.games),
      prompt_slots=bucket(cfg.max_prompt_tokens, minimum=16),
      new_slots=bucket(s.max_new_tokens, minimum=16),
      extra_params=int(cfg.rl.needs_reference) + int(cfg.opponent in ("checkpoint", "league")),
      epochs=cfg.rl.epochs)


def _gib(n: int) -> str:
  return f"{n / GIB:9.2f}"


def _phase(title: str, rows, total: int, budget: int) -> list[str]:
  lines = [title]
  lines += [f"  {label:<52}{_gib(b)}" for label, b in rows]
  verdict = "fits" if total <= budget else "DOES NOT FIT"
  lines.append(f"  {'total':<52}{_gib(total)}  of {budget / GIB:.2f}: {verdict}")
  return lines


def render(plan: memory.Plan, note: str, mesh_source: str, chunk: int) -> str:
  """The table (GiB per device)."""
  t, m, w, model = plan.topology, plan.mesh, plan.work, plan.model
  param_dt, compute, cache = memory.dtypes(model, t.platform)
  split = m["data"] * m["fsdp"]
  lines = [(f"memory plan on {t.name}: {t.devices} devices x {t.hbm_bytes / GIB:.1f} GiB; "
            f"budget {plan.budget / GIB:.2f} GiB per device"),
           (f"model: {model.num_params / 1e9:.2f}B parameters ({model.num_layers} layers, d "
            f"{model.d_model}, vocab {model.vocab_size}); weights {param_dt.name}, compute "
            f"{compute.name}, KV cache {cache.name}")]
  if note:
    lines.append(f"  ({note})")
  lines += [f"mesh: data={m['data']} fsdp={m['fsdp']} tensor={m['tensor']} ({mesh_source})",
            (f"learner: {w.batch_size} samples per step in micro-batches of {w.micro_batch} rows "
             f"({-(-w.micro_batch // split)} per device) x {w.learner_tokens} tokens"),
            (f"sampler: {w.sampler_rows} prompts per turn, {w.prompt_slots} prompt + "
             f"{w.new_slots} new token slots each"),
            "", "per device (GiB)"]
  lines += _phase("learning phase (train_step)", plan.learner, plan.learner_total, plan.budget)
  lines.append(f"  {'(activations with per-layer remat, not in the model)':<52}"
               f"{_gib(plan.remat_activations)}")
  lines += _phase(f"sampling phase (generate, {plan.rows_per_call} rows per call)", plan.sampler,
                  plan.sampler_total, plan.budget)
  calls = -(-w.sampler_rows // chunk) if chunk else 0
  if not chunk:
    lines.append("sampler plan: not even one row per device fits")
  elif chunk >= plan.rows_per_call:
    lines.append(f"sampler plan: one call of {plan.rows_per_call} rows per turn fits")
  else:
    lines.append(f"sampler plan: split each turn's {w.sampler_rows} prompts into {calls} calls of "
                 f"{chunk} rows ({-(-chunk // split)} per device); the sampler has no max_rows "
                 "knob yet, so this needs one")
  lines.append("assumes: every row at the full prompt + response budget, no shared prompt prefix; "
               "materialised attention (no fused kernel); activations split over data x fsdp")
  return "\n".join(lines)


def advice(model: model_config.ModelConfig, work: memory.Workload, mesh: dict[str, int],
           topo: memory.Topology, headroom: float, plan: memory.Plan, chunk: int) -> list[str]:
  """What would make a refused config fit, each as a config change."""
  tips = []
  if not plan.learner_fits:
    micro = memory.largest_micro_batch(model, work, mesh, topo, headroom)
    if micro:
      tips.append(f"micro-batches: --config.rl.micro_batch_size={micro}")
    remat = plan.learner_total_remat
    tip = (f"remat: per-layer remat (the model has no remat option yet) would bring the learner "
           f"to {remat / GIB:.1f} GiB")
    if remat > plan.budget:
      micro = memory.largest_micro_batch(model, work, mesh, topo, headroom, remat=True)
      tip += (f", and with --config.rl.micro_batch_size={micro} it fits" if micro else
              ", still too much at any micro-batch")
    tips.append(tip)
  if not plan.learner_fits or not chunk:
    for other in memory.meshes(topo.devices):
      if other == mesh or work.micro_batch % (other["data"] * other["fsdp"]):
        continue
      trial = memory.estimate(model, work, other, topo, headroom)
      if trial.learner_fits and memory.sampler_chunk(model, work, other, topo, headroom):
        tips.append(f"mesh: --config.mesh.data={other['data']} --config.mesh.fsdp="
                    f"{other['fsdp']} --config.mesh.tensor={other['tensor']}")
        break
    tips.append("budgets: lower --config.max_prompt_tokens / --config.sampling.max_new_tokens "
                "(attention memory grows with their sum squared), or a bigger topology")
  return tips


def run(cd, topology: str, mesh: str = "config", headroom: float = 0.9,
        hbm_gib: float = 0.0) -> tuple[str, str | None]:
  """The plan of config dict ``cd`` on ``topology``: (the table, None if it fits or else the
  refusal naming what to change). Bad input raises ValueError naming the flag or field."""
  topo = memory.topology(topology)
  if hbm_gib > 0:
    topo = dataclasses.replace(topo, hbm_bytes=int(hbm_gib * GIB))
  if not 0 < headroom <= 1:
    raise InputError(f"--headroom={headroom} must lie in (0, 1], e.g. 0.9")
  cfg, model, note = resolve(cd)
  work = workload(cfg)
  if mesh == "config":
    chosen, source = mesh_lib.resolve_shape(cfg.mesh.as_dict(), topo.devices), "from the config"
  else:
    fitting = [m for m in memory.meshes(topo.devices)
               if work.micro_batch % (m["data"] * m["fsdp"]) == 0
               and memory.estimate(model, work, m, topo, headroom).learner_fits
               and memory.sampler_chunk(model, work, m, topo, headroom)]
    if not fitting:
      raise InputError(f"--mesh=auto: no mesh of {topo.devices} devices fits; pass --mesh=config "
                       "to see the config's plan and what to change")
    chosen, source = fitting[0], "chosen automatically: the least communication that fits"
  split = chosen["data"] * chosen["fsdp"]
  if work.micro_batch % split:
    raise InputError(f"the micro-batch of {work.micro_batch} rows does not split over mesh.data x "
                     f"mesh.fsdp = {split} devices; change rl.micro_batch_size or the mesh")
  plan = memory.estimate(model, work, chosen, topo, headroom)
  chunk = memory.sampler_chunk(model, work, chosen, topo, headroom)
  table = render(plan, note, source, chunk)
  if plan.learner_fits and chunk:
    return table + "\nverdict: fits" + ("" if chunk >= plan.rows_per_call else
                                         " with the sampler plan"), None
  tips = advice(model, work, chosen, topo, headroom, plan, chunk)
  return table, "verdict: REFUSED, does not fit; change one of:\n" + "\n".join(
      f"  - {t}" for t in tips)
