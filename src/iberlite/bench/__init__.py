"""Workflows that open engines to measure or check this device: raw throughput, pp512/tg128
(`speed.py`); `iberlite doctor` (`doctor.py`: load, decode, exactness probe per model, in a
child process); `iberlite advise` (`advise.py`: the fastest format on this CPU).
"""
