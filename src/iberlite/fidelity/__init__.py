"""Fidelity against lm-evaluation-harness 0.4.13: its own task definitions pointed at the
local data, its own `hf` code path, and an item-by-item comparison with iberlite's engines.

Needs the reference extra (`pip install -e .[reference]`).
"""
