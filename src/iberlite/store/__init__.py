"""The data layer: the only part of iberlite that reads or writes the database.

`Store` writes and reads; its read methods return the frozen records of
:mod:`iberlite.store.records`. The schema, its version and the migrations of older
databases are in :mod:`iberlite.store.schema`.
"""

from iberlite.store.records import (
    AdviceRecord,
    AggregateRecord,
    BenchRecord,
    DecisionRecord,
    EvalRecord,
    ItemFailure,
    ItemRecord,
    RunCost,
    RunRecord,
    cost_key,
)
from iberlite.store.schema import MIGRATIONS, SCHEMA_VERSION
from iberlite.store.store import Store, json_safe

__all__ = [
    "AdviceRecord",
    "AggregateRecord",
    "BenchRecord",
    "DecisionRecord",
    "EvalRecord",
    "ItemFailure",
    "ItemRecord",
    "MIGRATIONS",
    "RunCost",
    "RunRecord",
    "SCHEMA_VERSION",
    "Store",
    "cost_key",
    "json_safe",
]
