"""Device, cloud or cascade: the user's prices (`prices.py`), the routing analysis over
stored items (`routing.py`), a decision stored with its policy (`decision.py`), the run-time
router (`router.py`) and a local OpenAI-compatible endpoint as a cloud tier (`serve.py`).
"""
