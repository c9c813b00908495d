"""The sandbox task templates run in: no private attributes, no code, and bounded work.

Jinja's ImmutableSandboxedEnvironment already refuses `__class__`, `__globals__` and friends
and calls that mutate a list or dict. A prompt template needs fields, filters, conditionals and
small loops, nothing else, so this module takes the rest away and bounds what remains:

- refused when the task file is read (with the YAML line): templates over
  `MAX_TEMPLATE_CHARS`, syntax errors, `macro`/`call`/`include`/`import`/`extends`/`block`
  (the only ways to recurse or to reach other files), any attribute or item starting with `_`,
  and names that are neither a data field nor the one global, `range`;
- bounded while rendering: every loop iteration, call and filter is a step (at most
  `MAX_STEPS`, and `MAX_SECONDS` of wall time per render); every string, list or number a
  template builds or prints is checked *before* it is built (`*`, `+`, `~`, `%`, joins,
  padding and formatting widths), so `'a' * 10**9` or a doubling chain fails in microseconds
  instead of filling the memory.

A refused or over-budget template raises `TemplateLimit` (a `SecurityError`), which the
renderer reports as the task file's fault in one sentence.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

MAX_TEMPLATE_CHARS = 20_000
MAX_SIZE = 1_000_000  # characters (or list items) in any value a template builds or prints
MAX_INT_BITS = 100_000
MAX_STEPS = 200_000
MAX_SECONDS = 1.0

# Filters whose output is bounded by their input (or checked below); the others are gone:
# center/indent/wordwrap/slice take a size, random is not reproducible, the rest is HTML.
SAFE_FILTERS = (
    "abs", "attr", "batch", "capitalize", "count", "d", "default", "dictsort", "e", "escape",
    "first", "float", "format", "groupby", "int", "items", "join", "last", "length", "list",
    "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round",
    "select", "selectattr", "sort", "string", "striptags", "sum", "title", "tojson", "trim",
    "truncate", "unique", "upper", "wordcount",
)
_REFUSED_NODES = {
    nodes.Macro: "macros", nodes.CallBlock: "call blocks", nodes.Include: "include",
    nodes.Import: "import", nodes.FromImport: "import", nodes.Extends: "extends",
    nodes.Block: "blocks",
}
_PRINTF = re.compile(r"%[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?[a-zA-Z%]")
_BRACES = re.compile(r"\{[^{}]*:[^{}\d]*(\d*)(?:\.(\d+))?[^{}]*\}")


class TemplateLimit(SecurityError):
    """A template did something the sandbox refuses, or more work than it allows."""


@dataclass
class _Budget:
    steps: int = 0
    printed: int = 0
    deadline: float = 0.0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_budget", default=None)


def _size(value: Any) -> int:
    """Characters or items `value` would take once printed: what the bounds are about."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return len(value) + sum(_size(v) for v in value)
    if isinstance(value, dict):
        return len(value) + sum(_size(k) + _size(v) for k, v in value.items())
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3
    return 1


def _bounded(value: Any, what: str = "a value") -> Any:
    if _size(value) > MAX_SIZE:
        raise TemplateLimit(f"the template builds {what} over {MAX_SIZE:,} characters")
    return value


def _check_width(n: Any, what: str) -> None:
    if isinstance(n, int) and not isinstance(n, bool) and abs(n) > MAX_SIZE:
        raise TemplateLimit(f"{what} {n} is over the limit of {MAX_SIZE:,}")


def _check_format_string(fmt: Any) -> None:
    if not isinstance(fmt, str):
        return
    for width, precision in _PRINTF.findall(fmt) + _BRACES.findall(fmt):
        for n in (width, precision):
            if n == "*":
                raise TemplateLimit("a `*` width in a format string is not allowed")
            if n and int(n) > 10_000:
                raise TemplateLimit(f"a format width of {n} is over the limit of 10,000")


def _print(value: Any) -> Any:
    """Jinja's `finalize`: every `{{ ... }}` passes here, so the output is counted as it grows
    (a loop printing a fresh string each time would otherwise hold them all until the end)."""
    size = _size(value)
    budget = _BUDGET.get()
    if budget is not None:
        budget.printed += size
        size = budget.printed
    if size > MAX_SIZE:
        raise TemplateLimit(f"the template prints over {MAX_SIZE:,} characters")
    return value


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise TemplateLimit(f"the template took more than {MAX_STEPS:,} steps")
    if budget.steps % 256 == 0 and time.perf_counter() > budget.deadline:
        raise TemplateLimit(f"the template ran longer than {MAX_SECONDS:g} s")


def _check_call(obj: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a method call whose result would be too big, before it is computed."""
    for a in (*args, *kwargs.values()):
        _check_width(a, "a size argument of")
        _bounded(a, "an argument")
    name = getattr(obj, "__name__", "")
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str):
        _bounded(owner)
        if name in ("format", "format_map"):
            _check_format_string(owner)
        elif name == "replace" and len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            hits = len(owner) + 1 if not old else owner.count(old)
            _bounded_len(len(owner) + hits * max(0, len(new) - len(old)))
        elif name == "join" and args:
            items = list(args[0])
            _bounded_len(sum(_size(i) for i in items) + len(owner) * max(0, len(items) - 1))
        elif name == "expandtabs":
            tab = args[0] if args else kwargs.get("tabsize", 8)
            _bounded_len(len(owner) * (int(tab) if isinstance(tab, int) else 8))


def _bounded_len(n: int) -> None:
    if n > MAX_SIZE:
        raise TemplateLimit(f"the template builds a value over {MAX_SIZE:,} characters")


def _binop(op: str, left: Any, right: Any) -> Any:
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right))
    if op == "**" and ints and abs(left) > 1 and right > 0:
        if right * left.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"{left} ** {right} is too large a number")
    elif op == "*" and ints:
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimit("the template builds too large a number")
    elif op == "*":
        seq, n = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(n, int) and isinstance(seq, (str, list, tuple)):
            _bounded_len(_size(seq) * max(0, n))
    elif op == "+" and not ints:
        _bounded_len(_size(left) + _size(right))
    elif op == "%" and isinstance(left, str):
        _check_format_string(left)
        _bounded_len(len(left) + _size(right))
    return _OPS[op](left, right)


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "//": lambda a, b: a // b, "%": lambda a, b: a % b,
    "**": lambda a, b: a**b,
}


def _join(parts: Any) -> str:
    texts = [p if isinstance(p, str) else str(_bounded(p)) for p in parts]
    _bounded_len(sum(len(t) for t in texts))
    return "".join(texts)


def _zero(value: Any) -> bool:
    try:
        return float(value) == 0
    except (TypeError, ValueError):
        return False


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)  # keeps jinja_pass_arg, so context-taking filters still get it
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        values = [a for a in args if not isinstance(a, (Context, EvalContext, Environment))]
        for a in (*values, *kwargs.values()):
            _check_width(a, f"a size argument of `{name}`,")
        if name == "format" and values:
            _check_format_string(values[0])
        if name == "replace" and len(values) >= 3:
            s, old, new = (str(v) for v in values[:3])
            hits = len(s) + 1 if not old else s.count(old)
            _bounded_len(len(s) + hits * max(0, len(new) - len(old)))
        _bounded_len(sum(_size(a) for a in values))
        result = fn(*args, **kwargs)
        if name == "int" and len(values) == 1 and not kwargs and result == 0 and not _zero(values[0]):
            raise ValueError(f"{values[0]!r} is not a number")  # Jinja would say 0: a wrong label
        return _bounded(result)

    return guarded


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with a step at the top of every block (so every loop iteration
    counts) and a size check before every `~` concatenation."""

    def blockvisit(self, nodes: Any, frame: Frame) -> None:
        self.writeline("environment.step()")
        super().blockvisit(nodes, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox for task templates (see the module docstring)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset(_OPS)
    concat = staticmethod(_join)  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, keep_trailing_newline=True, optimized=False,
                         finalize=_print)
        self.globals.clear()
        self.globals["range"] = safe_range
        self.filters = {name: _guard_filter(name, self.filters[name]) for name in SAFE_FILTERS}

    def step(self) -> None:
        """One unit of work (a block entered, a loop iteration)."""
        _tick()

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_format_string(owner)  # a width is refused before the string is built
        return super().wrap_str_format(value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return _bounded(_binop(operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        _check_call(__obj, args, kwargs)
        return _bounded(super().call(__context, __obj, *args, **kwargs))


ENV = BoundedEnvironment()


def template_problem(source: str) -> str | None:
    """Why `source` is refused as a task template (a clause for a sentence), or None."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return f"is {len(source):,} characters long, over the limit of {MAX_TEMPLATE_CHARS:,}"
    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError as exc:
        return f"is not a valid template ({exc.message}, template line {exc.lineno})"
    except (RecursionError, MemoryError):
        return "is nested too deeply to parse"
    for call in tree.find_all((nodes.Filter, nodes.Test)):
        known = ENV.filters if isinstance(call, nodes.Filter) else ENV.tests
        if call.name not in known:
            what = "filter" if isinstance(call, nodes.Filter) else "test"
            return f"is not a valid template (No {what} named {call.name!r}, template line {call.lineno})"
    for kind, label in _REFUSED_NODES.items():
        if next(tree.find_all(kind), None) is not None:
            return f"uses {label}, which task templates may not"
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = (node.attr if isinstance(node, nodes.Getattr)
                else getattr(getattr(node, "arg", None), "value", None))
        if isinstance(name, str) and name.startswith("_"):
            return f"reads the private attribute {name!r}, which task templates may not"
    return None


@functools.lru_cache(maxsize=1024)
def template_fields(source: str) -> frozenset[str]:
    """The data fields a template reads (names it uses that it does not set itself)."""
    return frozenset(meta.find_undeclared_variables(ENV.parse(source)) - set(ENV.globals))


def run_bounded(fn: Callable[[], Any]) -> Any:
    """Call `fn` (a render) under a fresh step and time budget."""
    token = _BUDGET.set(_Budget(deadline=time.perf_counter() + MAX_SECONDS))
    try:
        return _bounded(fn())
    finally:
        _BUDGET.reset(token)
