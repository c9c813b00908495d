"""Tasks as data: the YAML spec, the registry of built-in, sample and user tasks, the
data reader (`data.py`), the sandboxed renderer and the rendered items.
"""
