"""Pareto fronts for accuracy-versus-cost plots: pure functions, no I/O.

A point is a (cost, quality) pair: lower cost is better, higher quality is better. A point is
*dominated* when another point is at least as good on both axes and strictly better on one;
the Pareto front is the set of points nobody dominates. Two identical points do not dominate
each other, so both stay on the front.

Points with a missing or non-finite coordinate (``None``, NaN, inf) are never on the front and
never dominate anything: a model whose energy was not recorded is left out of that plot rather
than placed at zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["dominates", "pareto_front", "front_steps"]


def _ok(v: float | None) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when point `a` = (cost, quality) dominates `b`: no worse on both, better on one."""
    (ca, qa), (cb, qb) = a, b
    return ca <= cb and qa >= qb and (ca < cb or qa > qb)


def pareto_front(costs: Sequence[float | None], qualities: Sequence[float | None]) -> tuple[int, ...]:
    """Indices of the non-dominated points, ordered by increasing cost (then decreasing quality).

    `costs` are minimised, `qualities` maximised. Runs in O(n log n): after sorting by cost
    (ties: best quality first), a point is on the front exactly when its quality beats every
    quality seen at a strictly lower cost, or equals that of a front point with the same cost
    and quality.
    """
    if len(costs) != len(qualities):
        raise ValueError(f"got {len(costs)} costs for {len(qualities)} qualities")
    valid = [i for i in range(len(costs)) if _ok(costs[i]) and _ok(qualities[i])]
    order = sorted(valid, key=lambda i: (float(costs[i]), -float(qualities[i]), i))  # type: ignore[arg-type]
    front: list[int] = []
    best = -math.inf
    last: tuple[float, float] | None = None
    for i in order:
        point = (float(costs[i]), float(qualities[i]))  # type: ignore[arg-type]
        if point[1] > best:
            front.append(i)
            best = point[1]
            last = point
        elif last is not None and point == last:
            front.append(i)  # an exact duplicate of a front point is not dominated by it
    return tuple(front)


def front_steps(costs: Sequence[float], qualities: Sequence[float],
                front: Sequence[int]) -> tuple[list[float], list[float]]:
    """x and y coordinates of the staircase through the front points, for plotting.

    From each front point the line goes right at constant quality to the next front point's
    cost, then up: the region below and right of the line is what the front dominates.
    """
    xs: list[float] = []
    ys: list[float] = []
    for k, i in enumerate(front):
        x, y = float(costs[i]), float(qualities[i])
        if k:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    return xs, ys
