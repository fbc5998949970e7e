"""Launchers: launch/xm_launch.py (xmanager) and launch/tpu_vm.sh (gcloud TPU VMs)."""
