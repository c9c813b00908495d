"""Hostile task templates are refused or bounded: one clear error, never a hang or a crash.

Every case goes through the path a user's task takes (`parse_task` then `render`), so an
escape, a hang or a memory blow-up here is one a task file could cause. The hypothesis test
builds templates from the pieces hostile ones are made of (big numbers, repetition, loops,
globals, private attributes, format widths) and checks that each either renders within the
sandbox's bounds or is refused with the project's UserError.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

REPO = Path(__file__).resolve().parents[1]
try:
    import iberlite  # noqa: F401
except ImportError:  # package not installed into the venv yet: use the src tree
    sys.path.insert(0, str(REPO / "src"))

from iberlite.errors import TaskSpecError, UserError  # noqa: E402
from iberlite.tasks import sandbox  # noqa: E402
from iberlite.tasks.data import Doc  # noqa: E402
from iberlite.tasks.render import render  # noqa: E402
from iberlite.tasks.spec import parse_task  # noqa: E402

DOC = Doc(id="d1", fields={"q": "¿Llueve hoy en Bilbao?", "label": "1", "n": 3, "xs": ["a", "b"]})
SLACK_S = 2.0  # wall time allowed above the sandbox's own limit (a loaded CI machine)


def task(doc_to_text: str, doc_to_target: str = "{{ label | int }}"):
    raw = {
        "name": "hostile", "lang": "es", "family": "nli", "output": "multiple_choice",
        "source": {"format": "jsonl", "files": ["./x.jsonl"]},
        "doc_to_text": doc_to_text, "doc_to_choice": ["no", "sí"], "doc_to_target": doc_to_target,
        "metrics": ["acc"],
    }
    return parse_task(raw, Path("/tmp/hostile.yaml"))


def outcome(template: str) -> tuple[str, str, float]:
    """('ok', rendered text) or ('refused', message), and the wall time it took."""
    t0 = time.perf_counter()
    try:
        inst = render(task(template), DOC)
    except UserError as exc:
        return "refused", str(exc), time.perf_counter() - t0
    return "ok", inst.context, time.perf_counter() - t0


@pytest.mark.parametrize(
    "template,reason",
    [
        ("{{ ''.__class__ }}", "private attribute '__class__'"),
        ("{{ q.__class__.__mro__[1].__subclasses__() }}", "private attribute"),
        ("{{ cycler.__init__.__globals__.os }}", "private attribute"),
        ("{{ q['__class__'] }}", "private attribute '__class__'"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "uses macros"),
        ("{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f(q) }}", "uses macros"),
        ("{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}", "nested too deeply"),
        ("{{ q }}" * 5000, "over the limit of 20,000"),
        ("{% extends 'base.html' %}", "uses extends"),
    ],
)
def test_hostile_templates_are_refused_when_the_task_is_read(template, reason):
    with pytest.raises(TaskSpecError) as exc:
        task(template)
    assert reason in str(exc.value) and "hostile.yaml" in str(exc.value)


@pytest.mark.parametrize(
    "template,reason",
    [
        ("{{ range(10**9) | list }}", "over the limit"),
        ("{% for i in range(10**9) %}{% endfor %}", "over the limit"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "more than 200,000 steps"),
        ("{{ 'a' * 10**9 }}", "over 1,000,000 characters"),
        ("{{ [q] * 10**8 }}", "over 1,000,000 characters"),
        ("{% set a = q * 40000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c ~ c }}", "over 1,000,000"),
        ("{{ 2 ** (10 ** 8) }}", "too large a number"),
        ("{% set x = 10 ** 3000 %}{{ x * x * x * x * x * x * x * x * x * x * x * x }}", "number"),
        ("{{ '%0999999999d' % 1 }}", "format width"),
        ("{{ '{:>999999999}'.format(1) }}", "format width"),
        ("{{ '%*d' | format(10**9, 1) }}", "over the limit"),
        ("{{ q.ljust(10**9) }}", "over the limit"),
        ("{{ q.replace('', q * 40000) }}", "over 1,000,000 characters"),
        ("{{ q | replace('', q * 40000) }}", "over 1,000,000 characters"),
        ("{{ (q * 40000).expandtabs(1000) }}", "over 1,000,000 characters"),
        ("{{ ('\t' * 1000).expandtabs(100000) }}", "over 1,000,000 characters"),
        ("{{ ' '.join([q * 40000] * 100) }}", "over 1,000,000 characters"),
        ("{% for i in range(99999) %}{{ q * 40 }}{% endfor %}", "over 1,000,000 characters"),
        ("{{ xs.append(1) }}", "unsafe"),
    ],
)
def test_hostile_templates_are_bounded_while_rendering(template, reason):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kind, message, seconds = outcome(template)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert kind == "refused", message[:200]
    assert reason in message and "hostile" in message
    assert seconds < sandbox.MAX_SECONDS + SLACK_S
    assert grown_mib < 200


@pytest.mark.parametrize("name", ["cycler", "joiner", "namespace", "lipsum", "dict"])
def test_jinja_globals_other_than_range_are_gone(name):
    kind, message, _ = outcome(f"{{{{ {name}() }}}}")
    assert kind == "refused" and f"'{name}' is undefined" in message


def test_ordinary_templates_still_render():
    assert outcome("{{ q | upper }} {{ xs | join(', ') }} {{ n + 1 }}")[:2] == (
        "ok", "¿LLUEVE HOY EN BILBAO? a, b 4")
    assert outcome("{% for x in xs %}{{ loop.index }}. {{ x }} {% endfor %}")[1] == "1. a 2. b "
    assert outcome("{{ '%.2f' | format(n / 7) }} {{ '{} y {}'.format(q[:3], n) }}")[1] == "0.43 ¿Ll y 3"
    assert outcome("{% set s = q ~ '!' %}{{ s if n > 2 else '' }}")[1] == "¿Llueve hoy en Bilbao?!"


def test_int_no_longer_reads_a_word_as_zero():
    """Jinja's `int` gives 0 for 'neutral': a label out of range would silently become label 0."""
    inst = render(task("{{ q }}"), DOC)
    assert inst.gold == 1
    bad = Doc(id="d2", fields={**DOC.fields, "label": "neutral"})
    with pytest.raises(UserError) as exc:
        render(task("{{ q }}"), bad)
    assert "'neutral' is not a number" in str(exc.value)


# ---------------------------------------------------------------- generated templates

ATOMS = st.sampled_from([
    "q", "label", "n", "xs", "1", "7", "10**9", "10**5", "99999", "'ab'", "'%0999d'", "'{:>99999}'",
    "''", "[q, q]", "range(5)", "range(10**6)", "cycler", "joiner", "namespace", "lipsum", "dict",
    "q.__class__", "xs.__len__", "loop", "none", "true", "-3", "2.5", "'\t'",
    "q * 99999", "q * 20000", "xs * 99999", "10 ** 3000", "q ~ q ~ q ~ q",
])
BINOPS = st.sampled_from([" * ", " + ", " ~ ", " ** ", " % ", " // ", " - ", " / "])
FILTERS = st.sampled_from([
    "upper", "length", "list", "join", "join(q)", "replace('', q)", "replace('a', q * 99)",
    "format(n)", "int", "string", "center(99999)", "batch(3)", "sum", "first", "reverse", "sort",
    "wordcount", "truncate(5)", "indent(10**6)", "trim", "tojson", "map('upper')",
])
METHODS = st.sampled_from([
    ".upper()", ".replace('', q)", ".ljust(99999)", ".format(q, q)", ".join(xs)", ".split()",
    ".expandtabs(99999)", ".center(10**6)", ".zfill(10**5)", ".count('a')",
])


def _expr(children):
    return st.one_of(
        st.tuples(children, BINOPS, children).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        st.tuples(children, FILTERS).map(lambda t: f"({t[0]} | {t[1]})"),
        st.tuples(children, METHODS).map(lambda t: f"({t[0]}){t[1]}"),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
    )


EXPRS = st.recursive(ATOMS, _expr, max_leaves=6)


def _stmt(children):
    return st.one_of(
        st.tuples(EXPRS, children).map(lambda t: f"{{% for i in {t[0]} %}}{t[1]}{{% endfor %}}"),
        st.tuples(EXPRS, children).map(lambda t: f"{{% if {t[0]} %}}{t[1]}{{% endif %}}"),
        st.tuples(EXPRS, children).map(lambda t: f"{{% set v = {t[0]} %}}{t[1]}{{{{ v }}}}"),
        st.lists(children, min_size=2, max_size=3).map("".join),
    )


TEMPLATES = st.recursive(EXPRS.map(lambda e: f"{{{{ {e} }}}}") | st.just("Q: {{ q }}"), _stmt, max_leaves=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEMPLATES)
def test_generated_templates_render_within_bounds_or_raise_a_user_error(template):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        spec = task(template)
        inst = render(spec, DOC)
    except UserError as exc:
        message = str(exc)
        assert "\n" not in message.strip() or "template line" in message or "hostile" in message
    else:
        assert len(inst.context) <= sandbox.MAX_SIZE
    assert time.perf_counter() - t0 < sandbox.MAX_SECONDS + SLACK_S, template
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 300, template
