"""Engines answer requests: the protocol (`base.py`), the one factory that opens them,
the in-process llama.cpp engine with its scoring layout, per-CPU kernel plan and exactness
probe, the transformers reference, and OpenAI-compatible endpoints.
"""
