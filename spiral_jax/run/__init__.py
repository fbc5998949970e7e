"""Orchestration: a run's setup (tokenizer, policy, mesh, checkpoints), the training loop, the SFT
baseline run, evaluating a saved run, and stop signals. The command lines are thin over these."""
