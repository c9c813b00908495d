"""Scoring: one record per metric (`metric.py`), the scorers and bootstrap CIs
(`metrics.py`), a task's scores from its items (`task_scores.py`), language identification
for `lang_ok`, and the signatures and evaluation keys of results.
"""
