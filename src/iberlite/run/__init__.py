"""Running an evaluation: the records a run shares (`spec.py`), planning (`plan.py`),
executors (local, Ray), one batch through an engine (`evaluate.py`), the only writer to the
store (`writer.py`) with a task's scores from its items (`task_scores.py`) and the signatures
and evaluation keys of results (`signature.py`), and the run itself (`runner.py`) with its
interruption and crash supervision.
"""
