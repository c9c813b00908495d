"""A malformed task YAML is refused when it is read, naming the file and the line of the key.

No model is needed: every case fails while the task files are loaded. The last tests run the
real CLI in a subprocess to check the exit code (2) and the one-line message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
try:
    import iberlite  # noqa: F401
except ImportError:  # package not installed into the venv yet: use the src tree
    sys.path.insert(0, str(REPO / "src"))

from iberlite.errors import TaskSpecError  # noqa: E402
from iberlite.tasks import spec as spec_module  # noqa: E402
from iberlite.tasks.data import load_docs  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402

TASK = """\
name: my_task
lang: es
family: nli
output: multiple_choice
source:
  format: jsonl
  files: [./items.jsonl]
  id: id
doc_to_text: "Pregunta: {{ q }}\\nRespuesta:"
doc_to_choice: ["no", "sí"]
doc_to_target: "{{ label }}"
metrics: [acc]
"""


def refused(tmp_path: Path, text: str) -> tuple[str, Path]:
    """Write the task file, load it, and return the refusal message and the file's path."""
    folder = tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    (folder / "items.jsonl").write_text('{"id": "a", "q": "¿Sí?", "label": 1}\n', encoding="utf-8")
    path = folder / "my_task.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaskSpecError) as exc:
        load_task_specs([folder])
    assert exc.value.exit_code == 2
    return str(exc.value), path


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    "old,new,key,hint",
    [
        ("doc_to_text:", "doc_to_txt:", "doc_to_txt", "did you mean `doc_to_text`?"),
        ("metrics: [acc]", "metrics: [acc]\nprompt: hola", "prompt", ""),
        ("  id: id", "  id: id\n  filez: [x.jsonl]", "source.filez", "did you mean `files`?"),
    ],
    ids=["misspelt-top-level", "unknown-top-level", "unknown-under-source"],
)
def test_unknown_key_is_refused_with_its_line(tmp_path, old, new, key, hint):
    text = TASK.replace(old, new)
    msg, path = refused(tmp_path, text)
    line = line_of(text, key.split(".")[-1] + ":")
    assert f"Task file {path}, line {line} has an unknown key `{key}`" in msg
    assert hint in msg and "valid keys" in msg


@pytest.mark.parametrize(
    "key,template,problem",
    [
        ("doc_to_text", "Pregunta: {{ q }", "is not a valid template (unexpected '}'"),
        ("doc_to_text", "{% for x in q %}{{ x }}", "is not a valid template"),
        ("doc_to_target", "{{ label | nosuchfilter }}", "No filter named 'nosuchfilter'"),
        ("doc_to_choice", "{{ [q, q.__class__] }}", "private attribute '__class__'"),
        ("doc_to_text", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "uses macros"),
        ("doc_to_text", "{% include 'other.yaml' %}", "uses include"),
    ],
    ids=["unclosed", "unclosed-block", "unknown-filter", "private-attribute", "macro", "include"],
)
def test_bad_template_is_refused_with_the_line_of_its_key(tmp_path, key, template, problem):
    lines = [ln for ln in TASK.splitlines() if not ln.startswith(f"{key}:")]
    text = "\n".join([*lines[:8], f"{key}: {yaml.safe_dump(template).strip()}", *lines[8:]]) + "\n"
    msg, path = refused(tmp_path, text)
    assert f"Task file {path}, line {line_of(text, key + ':')} has a `{key}` that" in msg
    assert problem in msg


def test_a_field_no_row_has_is_refused_with_the_line_of_the_template(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "items.jsonl").write_text('{"id": "a", "q": "¿Sí?", "label": 1}\n', encoding="utf-8")
    text = TASK.replace("{{ label }}", "{{ lable }}")
    (folder / "my_task.yaml").write_text(text, encoding="utf-8")
    spec = load_task_specs([folder])["my_task"]
    with pytest.raises(TaskSpecError) as exc:
        load_docs(spec, tmp_path)
    msg = str(exc.value)
    assert f"my_task.yaml, line {line_of(text, 'doc_to_target')} (task my_task)" in msg
    assert "'lable'" in msg and "fields: id, label, q" in msg


@pytest.mark.parametrize(
    "files",
    ["[../../etc/passwd]", "[/etc/passwd]", "[./../outside.jsonl]", "[data/../../x.tsv]",
     '["C:\\\\Windows\\\\win.ini"]', "[..]"],
    ids=["dotdot", "absolute", "dot-slash-dotdot", "climbs-out", "windows-drive", "parent"],
)
def test_a_path_outside_the_data_dir_is_refused(tmp_path, files):
    text = TASK.replace("files: [./items.jsonl]", f"files: {files}")
    msg, path = refused(tmp_path, text)
    assert f"Task file {path}, line {line_of(text, 'files:')} has the path" in msg
    assert "outside" in msg


def test_a_path_outside_in_a_join_or_a_lines_source_is_refused(tmp_path):
    join = TASK.replace("  id: id", "  id: id\n  join: {format: csv, files: [../../etc/shadow], \"on\": id}")
    msg, _ = refused(tmp_path, join)
    assert f"line {line_of(join, 'join:')}" in msg and "source.join.files" in msg
    lines = TASK.replace("  format: jsonl\n  files: [./items.jsonl]",
                         "  format: lines\n  files:\n    q: /etc/hostname\n    label: ./labels.txt")
    msg, _ = refused(tmp_path, lines)
    assert f"line {line_of(lines, '  files:')}" in msg and "'/etc/hostname'" in msg


def test_a_path_that_stays_inside_is_accepted(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "items.jsonl").write_text('{"id": "a", "q": "¿Sí?", "label": 1}\n', encoding="utf-8")
    (folder / "my_task.yaml").write_text(TASK.replace("./items.jsonl", "./sub/../items.jsonl"),
                                         encoding="utf-8")
    spec = load_task_specs([folder])["my_task"]
    assert [d.id for d in load_docs(spec, tmp_path)] == ["a"]


def test_yaml_is_loaded_safely(tmp_path):
    """A Python tag is refused by the safe loader, and libyaml's loader is the one used."""
    assert spec_module._SAFE_LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    marker = tmp_path / "pwned"
    text = TASK.replace("metrics: [acc]", f"metrics: !!python/object/apply:os.system [\"touch {marker}\"]")
    msg, path = refused(tmp_path, text)
    assert f"Task file {path} is not valid YAML at line {line_of(text, 'metrics')}" in msg
    assert not marker.exists()


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("metrics: [acc]\n", "", "has no `metrics` field"),
        ("  format: jsonl\n", "", "has no `source.format` field"),
        ("metrics: [acc]", "metrics: [acc]\ngeneration: {max_tokens: -5}", "generation.max_tokens: -5"),
        ("source:\n  format: jsonl\n  files: [./items.jsonl]\n  id: id\n", "source: [a, b]\n",
         "`source`, which must be a mapping"),
    ],
    ids=["no-metrics", "no-format", "negative-max-tokens", "source-not-a-mapping"],
)
def test_other_malformed_fields_are_one_sentence(tmp_path, old, new, expected):
    msg, path = refused(tmp_path, TASK.replace(old, new))
    assert str(path) in msg and expected in msg and msg.endswith(".")


@pytest.mark.parametrize(
    "written,family",
    [("qa", "qa"), ("comprensión", "comprensión"), ("comprensio\u0301n", "comprensión"),
     ("long-form_qa2", "long-form_qa2"), ("lm_eval", "lm_eval")],
    ids=["qa", "accented", "accent-typed-apart", "digits-and-marks", "lm_eval"],
)
def test_a_family_is_the_users_own_word(tmp_path, written, family):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "items.jsonl").write_text('{"id": "a", "q": "¿Sí?", "label": 1}\n', encoding="utf-8")
    (folder / "my_task.yaml").write_text(TASK.replace("family: nli", f"family: {written}"), encoding="utf-8")
    assert load_task_specs([folder])["my_task"].family == family


@pytest.mark.parametrize(
    "value,shown",
    [('""', "''"), ("5", "5"), ("[qa, nli]", "['qa', 'nli']"), ("QA", "'QA'"), ("question answering", "'question answering'"),
     ("2qa", "'2qa'"), ("q" * 41, repr("q" * 41))],
    ids=["empty", "a-number", "a-list", "capitals", "two-words", "starts-with-a-digit", "too-long"],
)
def test_a_family_that_is_not_one_word_is_one_sentence(tmp_path, value, shown):
    text = TASK.replace("family: nli", f"family: {value}")
    msg, path = refused(tmp_path, text)
    assert msg == (f"Task file {path}, line {line_of(text, 'family:')} has family: {shown}; a family is one "
                   "lowercase word of at most 40 characters: letters (accented ones too), digits, `_` or `-`, "
                   "starting with a letter.")


def test_a_task_file_that_is_not_utf8_is_refused(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "my_task.yaml").write_bytes(TASK.replace("sí", "s\xed").encode("latin-1"))
    with pytest.raises(TaskSpecError) as exc:
        load_task_specs([folder])
    assert "is not UTF-8 text" in str(exc.value)


def test_every_builtin_task_file_passes_the_checks():
    """The stricter loader still reads every shipped task (no unknown key, no refused template)."""
    specs = load_task_specs()
    assert len(specs) == 56  # 48 + the reading-comprehension, TECA and ASSIN tasks (issue 24)
    assert all(s.key_lines for s in specs.values())


# ---------------------------------------------------------------- through the CLI


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("IBERLITE_DATA_DIR", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "2000"
    return subprocess.run([sys.executable, "-m", "iberlite.cli.app", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_refuses_a_task_file_without_metrics_in_one_sentence(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "my_task.yaml").write_text(TASK.replace("metrics: [acc]\n", ""), encoding="utf-8")
    proc = cli("tasks", "--tasks-dir", str(folder), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"Error: Task file {folder / 'my_task.yaml'} has no `metrics` field."


def test_cli_refuses_a_family_that_is_not_a_word_with_exit_2_and_one_sentence(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "items.jsonl").write_text('{"id": "a", "q": "¿Sí?", "label": 1}\n', encoding="utf-8")
    (folder / "my_task.yaml").write_text(TASK.replace("family: nli", 'family: "Q&A"'), encoding="utf-8")
    for args in (("tasks",), ("run", "--models", "smollm2-135m", "--tasks", "my_task", "--db", str(tmp_path / "r.db"))):
        proc = cli(*args, "--tasks-dir", str(folder), cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        [msg] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert msg.startswith(f"Error: Task file {folder / 'my_task.yaml'}, line 3 has family: 'Q&A'; a family is ")
        assert msg.count(". ") == 0 and msg.endswith("starting with a letter.")
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize(
    "old,new",
    [("doc_to_text:", "doc_to_txt:"), ("./items.jsonl", "../../etc/passwd"),
     ("{{ q }}", "{{ q }"), ("{{ label }}", "{{ lable }}")],
    ids=["unknown-key", "path-outside", "template-syntax", "undefined-field"],
)
def test_cli_refuses_a_bad_task_file_with_exit_2_and_one_line(tmp_path, old, new):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "items.jsonl").write_text('{"id": "a", "q": "¿Sí?", "label": 1}\n', encoding="utf-8")
    (folder / "my_task.yaml").write_text(TASK.replace(old, new), encoding="utf-8")
    proc = cli("run", "--models", "smollm2-135m", "--tasks-dir", str(folder), "--tasks", "my_task",
               "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    [msg] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert msg.startswith(f"Error: Task file {folder / 'my_task.yaml'}, line ")
    assert not (tmp_path / "r.db").exists()
