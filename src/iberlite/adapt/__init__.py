"""Adapting a model on the device: LoRA adapters trained on the CPU from a task's own train
split (the reference extra: transformers + PEFT), written as llama.cpp GGUF adapters that every
command applies as `MODEL+ADAPTER` (:mod:`iberlite.models.adapters`). Nothing here runs at
evaluation time.
"""
