"""What a user sees when they ask the CLI for something it cannot do.

Every case runs the real `iberlite` command in a subprocess and checks the exit code, that the
message is one line naming what is wrong and what would be valid, and that no Python traceback
reaches the user. All of them fail before a model is loaded, so each costs about a second
(except the one marked slow, which guards against evaluating a model before failing).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
try:
    import iberlite  # noqa: F401
except ImportError:  # package not installed into the venv yet: use the src tree
    sys.path.insert(0, str(REPO / "src"))


def cli(*args: str, cwd: Path, columns: int | None = 2000) -> subprocess.CompletedProcess:
    """Run `python -m iberlite.cli.app ARGS` in `cwd` (so a stray iberlite.db lands in a tmp dir).

    Rich wraps console output at $COLUMNS (80 when not a terminal); the tests use a wide
    console so that each assertion is about the message, not about line breaks, except the
    one test that checks the default width on purpose (`columns=None`).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("IBERLITE_DATA_DIR", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "iberlite.cli.app", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


def assert_clean_error(proc: subprocess.CompletedProcess, exit_code: int | None = None) -> str:
    """A non-zero exit, no traceback, and one line `Error: ...` on stderr; returns that line."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    if exit_code is None:
        assert proc.returncode != 0, both
    else:
        assert proc.returncode == exit_code, both
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{proc.stderr}"
    message = lines[0]
    assert message.startswith("Error: "), message
    assert message.rstrip().endswith("."), message
    return message


# ---------------------------------------------------------------- bad choices: exit code 2


def test_unknown_model_lists_the_catalog(tmp_path):
    proc = cli("run", "--models", "nosuch", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "'nosuch'" in msg
    assert "smollm2-135m" in msg and "gemma3-270m" in msg
    assert ".gguf" in msg  # says a path to a GGUF file is the other valid choice
    assert not (tmp_path / "r.db").exists()  # nothing was started


def test_unknown_task_lists_tasks_and_groups(tmp_path):
    proc = cli("run", "--tasks", "nosuch", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "'nosuch'" in msg
    for valid in ("xnli", "xstorycloze", "flores", "mgsm", "sample_commonsense"):
        assert valid in msg
    assert "iberlite tasks" in msg
    assert not (tmp_path / "r.db").exists()


def test_unknown_language_lists_the_languages(tmp_path):
    proc = cli("run", "--langs", "xx", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "'xx'" in msg
    assert "es, ca, eu, gl, pt, en" in msg
    assert not (tmp_path / "r.db").exists()


def test_unknown_scoring_mode_lists_the_modes(tmp_path):
    proc = cli("run", "--models", "smollm2-135m", "--tasks", "sample_commonsense_es",
               "--limit", "1", "--scoring", "bogus", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "'bogus'" in msg and "fast" in msg and "naive" in msg


def test_unknown_executor_lists_the_executors(tmp_path):
    proc = cli("run", "--executor", "slurm", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "'slurm'" in msg and "local, ray" in msg
    assert not (tmp_path / "r.db").exists()


def test_device_class_without_the_ray_executor_says_what_it_needs(tmp_path):
    proc = cli("run", "--device-class", "avx2-2c", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "--device-class needs --executor ray" in msg
    assert not (tmp_path / "r.db").exists()


def test_missing_tasks_dir_is_named(tmp_path):
    missing = tmp_path / "no_such_folder"
    proc = cli("run", "--tasks-dir", str(missing), "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert str(missing) in msg


# ---------------------------------------------------------------- missing and corrupt files


def test_missing_data_file_names_the_file_and_the_data_dir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("run", "--tasks", "xnli_es", "--data-dir", str(empty),
               "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "xnli_es" in msg
    assert "xnli-es-original.tsv" in msg
    assert str(empty.resolve()) in msg
    assert "--data-dir" in msg and "IBERLITE_DATA_DIR" in msg
    assert not (tmp_path / "r.db").exists()


def test_long_error_message_is_not_hard_wrapped_at_80_columns(tmp_path):
    """Piped into a log (no terminal, COLUMNS unset) the message must stay one line, so that
    the path it names can be copied; Rich's default 80-column wrapping splits it."""
    deep = tmp_path / "a_rather_long_folder_name_for_the_evaluation_data" / "and_one_more_level"
    deep.mkdir(parents=True)
    proc = cli("run", "--tasks", "xnli_es", "--data-dir", str(deep),
               "--db", str(tmp_path / "r.db"), cwd=tmp_path, columns=None)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert str(deep.resolve() / "xnlivar" / "data" / "es" / "xnli-es-original.tsv") in proc.stderr, (
        f"the missing file's path is split across lines:\n{proc.stderr}"
    )


@pytest.mark.parametrize(
    "content",
    [b"this is not a model at all\x00\x01\x02" * 40, b"GGUF\x03\x00\x00\x00" + b"\xff" * 64],
    ids=["junk", "truncated-header"],
)
def test_corrupt_gguf_is_a_one_sentence_error(tmp_path, content):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    proc = cli("run", "--models", str(bad), "--tasks", "sample_commonsense_es", "--limit", "1",
               "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "bad.gguf" in msg
    assert "not a valid GGUF" in msg


@pytest.mark.parametrize("keep", [0.5, 0.999999], ids=["half", "last-bytes-missing"])
def test_a_truncated_real_model_is_refused_before_llama_cpp_loads_it(tmp_path, keep):
    """A download cut short: the header is whole, the tensor data is not. Found from the header
    (before llama.cpp prints its own log lines), in one sentence, before anything is stored."""
    from iberlite.models.names import resolve_model

    real = resolve_model("smollm2-135m").path
    assert real is not None
    size = real.stat().st_size
    bad = tmp_path / "cut.gguf"
    with real.open("rb") as src, bad.open("wb") as dst:
        dst.write(src.read(int(size * keep)))
    proc = cli("run", "--models", str(bad), "--tasks", "sample_commonsense_es", "--limit", "1",
               "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "cut.gguf is not a valid GGUF model file (truncated" in msg and f"{size:,}" in msg
    assert not (tmp_path / "r.db").exists()


def test_missing_gguf_path_is_a_bad_choice(tmp_path):
    proc = cli("run", "--models", str(tmp_path / "absent.gguf"), "--db", str(tmp_path / "r.db"),
               cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "absent.gguf" in msg and "does not exist" in msg


@pytest.mark.slow
def test_corrupt_model_in_a_grid_fails_before_any_model_is_evaluated(tmp_path):
    """The runner promises every user error surfaces while planning, before a model loads:
    a corrupt second model must not cost a full evaluation of the first one."""
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"junk" * 100)
    db = tmp_path / "r.db"
    proc = cli("run", "--models", f"smollm2-135m,{bad}", "--tasks", "sample_commonsense_es",
               "--limit", "1", "--db", str(db), cwd=tmp_path)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "bad.gguf" in proc.stderr and "not a valid GGUF" in proc.stderr
    if db.exists():
        import sqlite3

        with sqlite3.connect(db) as con:
            n_items = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        assert n_items == 0, "smollm2-135m was evaluated before the corrupt model was noticed"


# ---------------------------------------------------------------- malformed task YAML


def test_task_yaml_syntax_error_names_the_file(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "broken.yaml").write_text("name: broken\nlang: es\n  family: [unclosed\n")
    proc = cli("run", "--tasks-dir", str(tasks), "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert str(tasks / "broken.yaml") in msg
    assert "not valid YAML" in msg
    assert "line" in msg


def test_task_yaml_unknown_metric_names_the_file_and_the_valid_metrics(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mytask.yaml").write_text(
        "name: my_task\nlang: es\nfamily: nli\noutput: multiple_choice\n"
        "source: {format: jsonl, files: [./d.jsonl]}\n"
        "doc_to_text: '{{ q }}'\ndoc_to_choice: [a, b]\ndoc_to_target: '{{ y }}'\n"
        "metrics: [acc, rouge]\n"
    )
    proc = cli("tasks", "--tasks-dir", str(tasks), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert str(tasks / "mytask.yaml") in msg
    assert "'rouge'" in msg
    assert "acc, acc_norm, f1_macro" in msg


def _user_task(folder: Path, doc_to_target: str) -> None:
    folder.mkdir()
    (folder / "d.jsonl").write_text('{"id": "x1", "q": "hola", "label": 0}\n', encoding="utf-8")
    (folder / "mytask.yaml").write_text(
        "name: my_task\nlang: es\nfamily: nli\noutput: multiple_choice\n"
        "source: {format: jsonl, files: [./d.jsonl], id: id}\n"
        "doc_to_text: 'Q: {{ q }}'\ndoc_to_choice: [a, b]\n"
        f"doc_to_target: \"{doc_to_target}\"\nmetrics: [acc]\n",
        encoding="utf-8",
    )


@pytest.mark.parametrize(
    "doc_to_target",
    ["{{ labl }}", "{{ ['a', 'b'].index(q) }}", "{{ label // 0 }}"],
    ids=["misspelt-field", "value-error", "zero-division"],
)
def test_template_that_fails_on_the_data_is_a_clean_error(tmp_path, doc_to_target):
    """A template that cannot be evaluated on a document is the task file's fault: the user
    gets a message naming the task, not a Jinja or Python traceback."""
    _user_task(tmp_path / "tasks", doc_to_target)
    proc = cli("run", "--models", "smollm2-135m", "--tasks-dir", str(tmp_path / "tasks"),
               "--tasks", "my_task", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "my_task" in msg
    assert not (tmp_path / "r.db").exists()


# ---------------------------------------------------------------- results


def test_results_without_a_database_says_so(tmp_path):
    db = tmp_path / "nothing_here.db"
    proc = cli("results", "--db", str(db), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert "No results database" in msg
    assert str(db) in msg
    assert not db.exists()  # looking must not create an empty database


def test_results_on_a_file_that_is_not_a_database_says_so(tmp_path):
    db = tmp_path / "notes.db"
    db.write_bytes(b"these are my notes, not a database\n" * 200)
    proc = cli("results", "--db", str(db), cwd=tmp_path)
    msg = assert_clean_error(proc, exit_code=2)
    assert str(db) in msg and "not an iberlite database" in msg


# ---------------------------------------------------------------- exit codes across commands


@pytest.mark.parametrize(
    "args,needle",
    [
        (("models", "--format", "bogus"), "Unknown output format 'bogus'"),
        (("tasks", "--tasks-dir", "{tmp}/absent"), "does not exist"),
        (("tasks", "--check", "--format", "xml"), "Unknown output format"),
        (("results", "--db", "{tmp}/notes.db"), "not an iberlite database"),
        (("report", "--db", "{tmp}/absent.db"), "No results database"),
        (("report", "--db", "{tmp}/notes.db"), "not an iberlite database"),
        (("report", "--format", "pdf"), "Unknown report format 'pdf'"),
        (("bench", "{tmp}/absent.gguf"), "does not exist"),
        (("bench", "openai:gemma3-270m"), "not a remote"),
        (("doctor", "--models", "openai:gemma3-270m"), "is remote"),
        (("serve", "openai:gemma3-270m"), "not openai:NAME"),
        (("decide", "--device", "a", "--cloud", "b", "--profile", "{tmp}/absent.yaml"), "does not exist"),
        (("route", "hola", "--policy", "{tmp}/absent.json", "--task", "xnli_es"), "does not exist"),
        (("run", "--models", "{tmp}/notes.gguf", "--tasks", "sample_nli_es"), "not a valid GGUF"),
        (("run", "--tasks", "xnli_es", "--data-dir", "{tmp}"), "needs the data file"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_user_errors_exit_2_with_one_line_in_every_command(tmp_path, args, needle):
    """2 is a user error whatever the command (docs/reliability.md); 1 is kept for a run that
    failed on valid input (an engine crash: tests/test_doctor.py)."""
    for name in ("notes.db", "notes.gguf"):
        (tmp_path / name).write_bytes(b"these are my notes, not a database\n" * 200)
    proc = cli(*(a.replace("{tmp}", str(tmp_path)) for a in args), cwd=tmp_path)
    assert needle in assert_clean_error(proc, exit_code=2)


def test_no_user_error_in_the_source_asks_for_exit_code_1():
    """Exit code 1 is for a failed run (RunFailure); a user error passing 1 would bring back
    the old mix of 1 and 2."""
    import re

    from iberlite.errors import RunFailure, UserError

    assert UserError("x").exit_code == 2 and RunFailure("x").exit_code == 1
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in (REPO / "src").rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"UserError\(.*(, 1\)|exit_code=1\b)", line)
    ]
    assert offenders == []


# ---------------------------------------------------------------- help


def test_top_level_help_lists_the_commands(tmp_path):
    proc = cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for command in ("models", "tasks", "run", "results"):
        assert command in proc.stdout


def test_run_help_lists_the_options(tmp_path):
    proc = cli("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for option in ("--models", "--tasks", "--langs", "--limit", "--data-dir", "--tasks-dir",
                   "--db", "--threads", "--scoring", "--seed", "--online", "--executor", "--address",
                   "--device-class"):
        assert option in proc.stdout


def test_run_help_shows_the_defaults_written_in_the_option_help(tmp_path):
    """The option help strings end in `[default: ...]` / `[env: IBERLITE_DATA_DIR; ...]`; the
    user must see them (Rich reads unescaped square brackets as markup and drops them)."""
    out = " ".join(cli("run", "--help", cwd=tmp_path).stdout.split())
    assert "IBERLITE_DATA_DIR" in out
    assert "all catalog models" in out
    assert "the sample suite" in out
    assert "all cores" in out
