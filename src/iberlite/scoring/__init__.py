"""Scoring: one record per metric (`metric.py`), the scorers and bootstrap CIs
(`metrics.py`), the reading-comprehension scorers (`squad.py`) and language identification for
`lang_ok`. Pure functions: nothing here reads the store, a task spec or an engine.
"""
