"""The device side of every number: its fingerprint (CPU, flags, llama.cpp's build), memory
and energy over a block, and llama-cpp-python imported quietly (`native.py`). Nothing here opens
an engine: the workflows that do (bench, doctor, advise) live in `bench/`.
"""
