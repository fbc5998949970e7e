#!/usr/bin/env bash
# Runs spiral_jax on a Cloud TPU VM slice with gcloud: create it, install the package on every
# worker, train on every worker with the same config, stream the log, delete it.
#
#   launch/tpu_vm.sh --name=spiral-v5e --project=my-project --zone=us-west4-a \
#       --accelerator=v5e-16 --provisioning=spot --repo=https://github.com/ORG/spiral_jax \
#       --config=experiments/paper_kuhn_qwen3_4b.py --workdir=gs://my-bucket/spiral/kuhn \
#       create install train logs -- --config.num_steps=200
#   launch/tpu_vm.sh --name=spiral-v5e --project=my-project --zone=us-west4-a delete
#
# Add --dry-run to print every gcloud command (one a line, shell-quoted) instead of running it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
# On each worker: the '~' is expanded by the worker's shell, not here.
# shellcheck disable=SC2088
readonly LOG='~/spiral_train.log' CHECKOUT='~/spiral_jax'

usage() {
  cat <<'EOF'
usage: launch/tpu_vm.sh [options] ACTION... [-- TRAIN_FLAGS...]

Actions, run in the order given:
  create    create the TPU VM NAME (with --provisioning=queued*: a queued resource, then wait
            until it is ACTIVE)
  install   on every worker: clone --repo at --ref into ~/spiral_jax, make a Python 3.11 venv
            there (uv) and install the package with jax[tpu], pinned by constraints.txt
  train     start training on every worker in the background (nohup), logging to
            ~/spiral_train.log; returns at once
  run       train on every worker in the foreground; returns when training ends
  logs      stream the training log of worker --worker (tail -F)
  delete    delete the TPU VM (a queued resource together with its VM); when delete is among
            the actions, it also runs if a later action than create fails

Options (--flag=value or --flag value):
  --name NAME            TPU VM name, lower-case letters, digits and '-' (required)
  --project PROJECT      GCP project id (required)
  --zone ZONE            e.g. us-west4-a, us-east5-b (required)
  --accelerator TYPE     create: v4-N, v5e-N (v5litepod-N), v5p-N or v6e-N, e.g. v5e-16
  --runtime-version V    create: TPU software version (default: tpu-ubuntu2204-base for v4,
                         v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e)
  --provisioning MODE    on-demand (default), spot, queued or queued-spot
  --repo URL             install: git URL of spiral_jax
  --ref REF              install: branch, tag or commit (default: main)
  --config PATH          train/run: config file inside the repository, e.g. experiments/tiny_cpu.py
  --workdir DIR          train/run: the run's directory; on a multi-host slice, a gs:// path
                         that every worker shares
  --sweep NAME           train/run: the points of experiments/sweeps.py NAME one after another,
                         each in DIR/<run name> (e.g. DIR/0_rae-True)
  --worker N             logs: the worker whose log to stream (default: 0)
  --dry-run              print the gcloud commands instead of running them
TRAIN_FLAGS after -- go to every training run, e.g. -- --config.num_steps=200
EOF
}

die() {
  echo "tpu_vm.sh: error: $*" >&2
  exit 2
}

# Quotes one word for a POSIX shell exactly as Python's shlex.quote does.
quote() {
  local word="$1" safe='^[A-Za-z0-9_@%+=:,./-]+$' escaped="'\"'\"'"
  if [[ -z "$word" ]]; then
    printf "''"
  elif [[ "$word" =~ $safe ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/$escaped}"
  fi
}

quote_all() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

dry_run=0

# Runs a gcloud command, or prints it under --dry-run.
gc() {
  if ((dry_run)); then
    printf '%s\n' "$(quote_all gcloud "$@")"
  else
    printf '+ %s\n' "$(quote_all gcloud "$@")" >&2
    gcloud "$@"
  fi
}

name="" project="" zone="" accelerator="" runtime_version="" provisioning="on-demand"
repo="" ref="main" config="" workdir="" sweep="" worker="0"
actions=()
train_flags=()

set_option() {
  case "$1" in
    --name) name="$2" ;;
    --project) project="$2" ;;
    --zone) zone="$2" ;;
    --accelerator) accelerator="$2" ;;
    --runtime-version) runtime_version="$2" ;;
    --provisioning) provisioning="$2" ;;
    --repo) repo="$2" ;;
    --ref) ref="$2" ;;
    --config) config="$2" ;;
    --workdir) workdir="$2" ;;
    --sweep) sweep="$2" ;;
    --worker) worker="$2" ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
}

while (($#)); do
  case "$1" in
    --) shift; train_flags=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --*=*) set_option "${1%%=*}" "${1#*=}" ;;
    --*)
      (($# >= 2)) || die "$1 needs a value"
      set_option "$1" "$2"
      shift
      ;;
    *) actions+=("$1") ;;
  esac
  shift
done

((${#actions[@]})) || die "name at least one action: create, install, train, run, logs, delete"
for action in "${actions[@]}"; do
  case "$action" in
    create | install | train | run | logs | delete) ;;
    *) die "unknown action '$action'; use create, install, train, run, logs or delete" ;;
  esac
done
has_action() {
  local a
  for a in "${actions[@]}"; do [[ "$a" == "$1" ]] && return 0; done
  return 1
}

[[ -n "$name" ]] || die "--name is required (the TPU VM's name, e.g. --name=spiral-v5e)"
[[ "$name" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] \
  || die "--name=$name: use lower-case letters, digits and '-', starting with a letter"
[[ -n "$project" ]] || die "--project is required (the GCP project id)"
[[ -n "$zone" ]] || die "--zone is required (a zone with TPU capacity, e.g. us-west4-a)"
case "$provisioning" in
  on-demand | spot | queued | queued-spot) ;;
  *) die "--provisioning=$provisioning: use on-demand, spot, queued or queued-spot" ;;
esac
[[ "$worker" =~ ^[0-9]+$ ]] || die "--worker=$worker must be a worker index such as 0"

# --accelerator=v5e-16 -> gcloud's accelerator type and the default runtime version.
accelerator_type="" default_runtime=""
if has_action create; then
  [[ -n "$accelerator" ]] || die "--accelerator is required for create (e.g. --accelerator=v5e-16)"
  generation="${accelerator%-*}" size="${accelerator##*-}"
  [[ "$accelerator" == *-* && "$size" =~ ^[1-9][0-9]*$ ]] \
    || die "--accelerator=$accelerator: write GENERATION-SIZE, e.g. v4-8, v5e-16, v5p-16, v6e-8"
  case "$generation" in
    v4 | v5p)  # sizes count TensorCores, two per chip
      ((size % 8 == 0)) || die "--accelerator=$accelerator: $generation sizes are multiples of 8"
      accelerator_type="$generation-$size"
      if [[ "$generation" == v4 ]]; then default_runtime=tpu-ubuntu2204-base
      else default_runtime=v2-alpha-tpuv5; fi
      ;;
    v5e | v5litepod | v6e)  # sizes count chips
      case "$size" in
        1 | 4 | 8 | 16 | 32 | 64 | 128 | 256) ;;
        *) die "--accelerator=$accelerator: $generation sizes are 1, 4, 8, 16, 32, 64, 128, 256" ;;
      esac
      if [[ "$generation" == v6e ]]; then
        accelerator_type="v6e-$size" default_runtime=v2-alpha-tpuv6e
      else
        accelerator_type="v5litepod-$size" default_runtime=v2-alpha-tpuv5-lite
      fi
      ;;
    *) die "--accelerator=$accelerator: unknown TPU generation '$generation'; use v4, v5e, v5p or v6e" ;;
  esac
  runtime_version="${runtime_version:-$default_runtime}"
fi
if has_action install; then
  [[ -n "$repo" ]] || die "--repo is required for install (the git URL of spiral_jax)"
fi

# The training command lines: one per sweep point (each in its own workdir), or just one.
train_commands=()
if has_action train || has_action run; then
  [[ -n "$config" ]] || die "--config is required for train/run (e.g. --config=experiments/tiny_cpu.py)"
  [[ -n "$workdir" ]] || die "--workdir is required for train/run (a gs:// path on multi-host slices)"
  # --multihost: every worker joins one JAX job (jax.distributed.initialize detects the slice)
  base=(.venv/bin/python -m spiral_jax.train --multihost "--config=$config")
  if [[ -n "$sweep" ]]; then
    points="$("${PYTHON:-python3}" "$ROOT/experiments/sweeps.py" "$sweep")" \
      || die "--sweep=$sweep could not be expanded (see the message above)"
    while read -r run_name point_flags; do
      train_commands+=("$(quote_all "${base[@]}" "--workdir=${workdir%/}/$run_name" \
        ${train_flags[@]+"${train_flags[@]}"}) $point_flags")
    done <<<"$points"
  else
    train_commands+=("$(quote_all "${base[@]}" "--workdir=$workdir" \
      ${train_flags[@]+"${train_flags[@]}"})")
  fi
fi

location=("--project=$project" "--zone=$zone")
queued=0
[[ "$provisioning" == queued* ]] && queued=1

create_vm() {
  local spot=()
  [[ "$provisioning" == *spot ]] && spot=(--spot)
  if ((queued)); then
    gc compute tpus queued-resources create "$name" "${location[@]}" "--node-id=$name" \
      "--accelerator-type=$accelerator_type" "--runtime-version=$runtime_version" \
      ${spot[@]+"${spot[@]}"}
    wait_until_active
  else
    gc compute tpus tpu-vm create "$name" "${location[@]}" \
      "--accelerator-type=$accelerator_type" "--version=$runtime_version" ${spot[@]+"${spot[@]}"}
  fi
}

wait_until_active() {
  local describe=(compute tpus queued-resources describe "$name" "${location[@]}"
    '--format=value(state.state)')
  if ((dry_run)); then
    gc "${describe[@]}"  # polled every 30 s until ACTIVE
    return
  fi
  local state
  while true; do
    state="$(gc "${describe[@]}")"
    case "$state" in
      ACTIVE) return ;;
      FAILED | SUSPENDED) die "queued resource $name is $state; see: gcloud compute tpus queued-resources describe $name --zone=$zone --project=$project" ;;
    esac
    echo "tpu_vm.sh: queued resource $name is ${state:-not ready}; checking again in 30 s" >&2
    sleep 30
  done
}

on_workers() {  # $1: which workers, $2: the command they run
  gc compute tpus tpu-vm ssh "$name" "${location[@]}" "--worker=$1" "--command=$2"
}

install_package() {
  on_workers all "set -e; if [ ! -d $CHECKOUT/.git ]; then git clone --quiet $(quote "$repo") $CHECKOUT; fi; \
cd $CHECKOUT && git fetch --quiet origin $(quote "$ref") && git checkout --quiet --detach FETCH_HEAD; \
python3 -m pip install --quiet --user --upgrade uv; \
[ -x .venv/bin/python ] || python3 -m uv venv --quiet --python 3.11 .venv; \
python3 -m uv pip install --quiet --python .venv/bin/python -c constraints.txt -e . 'jax[tpu]'"
}

start_training() {  # the sweep's points run one after another
  local script
  script="$(printf '%s; ' "${train_commands[@]}")"
  on_workers all "cd $CHECKOUT && nohup bash -c $(quote "${script%; }") > $LOG 2>&1 < /dev/null &"
}

run_training() {
  local script
  script="$(printf '%s && ' "${train_commands[@]}")"
  on_workers all "cd $CHECKOUT && ${script% && }"
}

stream_log() {
  on_workers "$worker" "tail -n 200 -F $LOG"
}

delete_vm() {
  if ((queued)); then
    gc compute tpus queued-resources delete "$name" "${location[@]}" --force --quiet
  else
    gc compute tpus tpu-vm delete "$name" "${location[@]}" --quiet
  fi
}

# A requested delete also runs after a failed action, so a broken run does not keep billing; but
# never after a failed create, whose name may belong to a VM that was there before.
pending_delete=0
if has_action delete && ! has_action create; then pending_delete=1; fi
delete_after_failure() {
  local status=$?
  if ((status != 0 && pending_delete)); then
    pending_delete=0
    echo "tpu_vm.sh: an action failed (exit $status); deleting $name as requested" >&2
    delete_vm || echo "tpu_vm.sh: delete failed too; delete $name by hand" >&2
  fi
}
trap delete_after_failure EXIT

for action in "${actions[@]}"; do
  case "$action" in
    create)
      create_vm
      if has_action delete; then pending_delete=1; fi
      ;;
    install) install_package ;;
    train) start_training ;;
    run) run_training ;;
    logs) stream_log ;;
    delete) pending_delete=0; delete_vm ;;
  esac
done
