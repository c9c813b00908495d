"""The device side of every number: its fingerprint, memory and energy over a block,
raw engine throughput (`bench.py`) and `iberlite doctor`.
"""
