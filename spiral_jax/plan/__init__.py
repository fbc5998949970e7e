"""Memory plans of training configs on target chips: per-device estimates (``memory``) and the
plan of a whole config (``planner``; the command line is ``python -m spiral_jax.plan``)."""
