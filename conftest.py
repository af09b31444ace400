"""Test-wide settings: notebooks run at the smoke profile, without progress bars."""

import os

# Kernels started by nbval inherit these.
os.environ.setdefault("LECTURE_PROFILE", "smoke")
os.environ.setdefault("LECTURE_PROGRESS", "0")

# The runner's test notebooks (one fails on purpose) are run by tests/test_runner.py, not by nbval.
collect_ignore_glob = ["tests/notebooks/*.ipynb", "runs/*", "data/*"]
