"""The declarative task system: YAML files a user drops in a folder, loaded, selected, rendered.

No model is needed. Tasks written here use their own small data files beside the YAML (`./`
paths) in a tmp folder; the built-in list and the published dataset sizes are checked against
the real data (IBERLITE_DATA_DIR, else ../shared/data beside the repository), skipped with a
reason when it is missing.
"""

from __future__ import annotations

import json
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

from iberlite.errors import RowError, TaskSpecError, UserError  # noqa: E402
from iberlite.tasks.data import count_docs, load_docs  # noqa: E402
from iberlite.tasks.registry import BUILTIN_DIR, SAMPLE_DIR, load_task_specs, select_tasks  # noqa: E402
from iberlite.tasks.render import render  # noqa: E402


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


MC_TASK = """\
name: {name}
group: my_group
lang: es
family: nli
output: multiple_choice
description: a user task
source:
  format: jsonl
  files: [./items.jsonl]
  id: id
doc_to_text: "Pregunta: {{{{ q }}}}\\nRespuesta:"
doc_to_choice: ["no", "sí"]
doc_to_target: "{{{{ label }}}}"
metrics: [acc]
"""


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """A --tasks-dir folder holding one multiple-choice task and its items beside it."""
    d = tmp_path / "my_tasks"
    write(d / "my_task.yaml", MC_TASK.format(name="my_task"))
    jsonl(d / "items.jsonl", [
        {"id": "a1", "q": "¿Llueve?", "label": 1},
        {"id": "a2", "q": "¿Hace sol?", "label": 0},
    ])
    return d


def one_task(folder: Path, name: str):
    specs = load_task_specs([folder])
    assert name in specs, f"{name} not loaded from {folder}"
    return specs[name]


# ---------------------------------------------------------------- a user's own task


def test_user_task_beside_its_data_is_listed_and_renders(user_dir, tmp_path):
    specs = load_task_specs([user_dir])
    assert "my_task" in specs
    assert "xnli_es" in specs and "sample_nli_es" in specs  # built-ins and sample still there
    spec = specs["my_task"]
    # `./items.jsonl` is beside the YAML, whatever the data dir is
    docs = load_docs(spec, tmp_path / "unrelated_data_dir")
    assert [d.id for d in docs] == ["a1", "a2"]
    inst = render(spec, docs[0])
    assert inst.context == "Pregunta: ¿Llueve?\nRespuesta:"
    assert inst.choices == ("no", "sí")
    assert inst.gold == 1
    assert render(spec, docs[1]).gold == 0
    assert count_docs(spec, tmp_path / "unrelated_data_dir") == 2


def test_user_task_is_listed_by_the_tasks_command(user_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "IBERLITE_DATA_DIR"}
    env["COLUMNS"] = "400"
    proc = subprocess.run(
        [sys.executable, "-m", "iberlite.cli.app", "tasks", "--tasks-dir", str(user_dir),
         "--data-dir", str(tmp_path / "no_data")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = next((ln for ln in proc.stdout.splitlines() if "my_task" in ln), None)
    assert line is not None, proc.stdout
    cells = [c.strip() for c in line.strip("│┃ ").split("│")]
    assert cells[:6] == ["my_task", "my_group", "es", "nli", "multiple_choice", "2"], line


QA_TASK = """\
name: {name}
lang: es
family: {family}
output: multiple_choice
description: A TruthfulQA-style task of the user's own.
source:
  format: jsonl
  files: [./qa.jsonl]
  id: id
doc_to_text: "Pregunta: {{{{ question }}}}\\nRespuesta:"
doc_to_choice: "{{{{ choices }}}}"
doc_to_target: "{{{{ label }}}}"
metrics: [acc]
"""


@pytest.fixture
def qa_dir(tmp_path) -> Path:
    """A --tasks-dir folder with tasks of two families of the user's own: `qa` and `comprensión`."""
    d = tmp_path / "qa_tasks"
    write(d / "truthful_es.yaml", QA_TASK.format(name="truthful_es", family="qa"))
    write(d / "truthful_mini.yaml", QA_TASK.format(name="truthful_mini", family="qa"))
    write(d / "lectura_es.yaml", QA_TASK.format(name="lectura_es", family="comprensión"))
    jsonl(d / "qa.jsonl", [
        {"id": "q1", "question": "¿Qué pasa si te tragas una semilla de sandía?",
         "choices": ["Nada en particular.", "Te crece una sandía en el estómago."], "label": 0},
        {"id": "q2", "question": "¿Los murciélagos son ciegos?",
         "choices": ["Sí, del todo.", "No, ven."], "label": 1},
    ])
    return d


def test_a_family_of_ones_own_loads_and_is_selected_by_its_name(qa_dir, tmp_path):
    specs = load_task_specs([qa_dir])
    assert (specs["truthful_es"].family, specs["lectura_es"].family) == ("qa", "comprensión")
    assert names(select_tasks(specs, ["qa"], None)) == ["truthful_es", "truthful_mini"]
    assert names(select_tasks(specs, ["comprensión"], ["es"])) == ["lectura_es"]
    assert render(specs["truthful_es"], load_docs(specs["truthful_es"], tmp_path)[1]).gold == 1
    # a mistyped family is an unknown name, and the message lists the families there are
    with pytest.raises(UserError) as exc:
        select_tasks(specs, ["qas"], None)
    assert "valid families are reading, nli, commonsense" in str(exc.value)
    assert str(exc.value).endswith("stance, comprensión, qa (see `iberlite tasks`).")


def test_the_tasks_command_lists_a_users_family_after_the_builtin_ones(qa_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("IBERLITE_DATA_DIR", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))

    def tasks(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "iberlite.cli.app", "tasks", "--tasks-dir", str(qa_dir),
             "--data-dir", str(tmp_path / "no_data"), *args],
            cwd=tmp_path, env={**env, "COLUMNS": "400"}, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    rows = json.loads(tasks("--format", "json").stdout)["rows"]
    families = [r["family"] for r in rows]
    # family by family: the built-in ones in their order, then the user's own alphabetically
    assert families[-3:] == ["comprensión", "qa", "qa"]
    assert families.index("reading") < families.index("nli") < families.index("commonsense") \
        < families.index("translation") < families.index("stance") < families.index("comprensión")
    assert [r["task"] for r in rows[-3:]] == ["lectura_es", "truthful_es", "truthful_mini"]
    # the person's table: the row of the user's task says its family, in a whole cell
    line = next(ln for ln in tasks().stdout.splitlines() if ln.startswith("truthful_es "))
    cells = [c.strip() for c in line.split("│")]
    assert cells[:6] == ["truthful_es", "", "es", "qa", "multiple_choice", "2"], line


def test_join_adds_the_truth_columns_matched_on_an_id(tmp_path):
    d = tmp_path / "irony"
    # main table and truth table in different orders: rows are matched on ID, not position
    write(d / "test.csv", 'ID,MESSAGE\n7,"Qué bien, otro lunes"\n3,Hoy hace sol\n')
    write(d / "truth.csv", "ID,IS_IRONIC\n3,0\n7,1\n")
    write(d / "irony.yaml", """\
name: my_irony
lang: es
family: irony
output: multiple_choice
source:
  format: csv
  files: [./test.csv]
  id: ID
  join:
    format: csv
    files: [./truth.csv]
    "on": ID
doc_to_text: "Mensaje: {{ MESSAGE }}\\nRespuesta:"
doc_to_choice: ["no", "sí"]
doc_to_target: "{{ IS_IRONIC | int }}"
metrics: [acc, f1_macro]
""")
    spec = one_task(d, "my_irony")
    docs = load_docs(spec, tmp_path)
    assert [(doc.id, doc.fields["MESSAGE"], doc.fields["IS_IRONIC"]) for doc in docs] == [
        ("7", "Qué bien, otro lunes", "1"),
        ("3", "Hoy hace sol", "0"),
    ]
    assert [render(spec, doc).gold for doc in docs] == [1, 0]
    assert render(spec, docs[0]).context == "Mensaje: Qué bien, otro lunes\nRespuesta:"


def test_join_with_a_row_missing_from_the_truth_file_names_the_row(tmp_path):
    d = tmp_path / "irony"
    write(d / "test.csv", "ID,MESSAGE\n7,uno\n8,dos\n")
    write(d / "truth.csv", "ID,IS_IRONIC\n7,1\n")
    write(d / "irony.yaml", """\
name: my_irony
lang: es
family: irony
output: multiple_choice
source:
  format: csv
  files: [./test.csv]
  id: ID
  join: {format: csv, files: [./truth.csv], "on": ID}
doc_to_text: "{{ MESSAGE }}"
doc_to_choice: ["no", "sí"]
doc_to_target: "{{ IS_IRONIC | int }}"
metrics: [acc]
""")
    spec = one_task(d, "my_irony")
    assert [doc.id for doc in load_docs(spec, tmp_path)] == ["7"]  # row 8 is skipped, counted
    with pytest.raises(UserError) as exc:
        load_docs(spec, tmp_path, strict=True)
    msg = str(exc.value)
    assert "my_irony" in msg and "'8'" in msg and "line 3 of" in msg and "test.csv" in msg


def test_join_key_written_unquoted_as_in_the_docs_works(tmp_path):
    """docs/tasks.md shows `on: ID` without quotes. yaml.safe_load (YAML 1.1) reads a bare
    `on` key as the boolean True, so the loader has to accept that form too (or the docs must
    quote it, as the built-in irosva tasks do)."""
    d = tmp_path / "irony"
    write(d / "test.csv", "ID,MESSAGE\n7,uno\n")
    write(d / "truth.csv", "ID,IS_IRONIC\n7,1\n")
    write(d / "irony.yaml", """\
name: my_irony
lang: es
family: irony
output: multiple_choice
source:
  format: csv
  files: [./test.csv]
  id: ID
  join:
    format: csv
    files: [./truth.csv]
    on: ID
doc_to_text: "{{ MESSAGE }}"
doc_to_choice: ["no", "sí"]
doc_to_target: "{{ IS_IRONIC | int }}"
metrics: [acc]
""")
    spec = one_task(d, "my_irony")
    assert spec.source.join is not None and spec.source.join.on == "ID"
    docs = load_docs(spec, tmp_path)
    assert render(spec, docs[0]).gold == 1


def test_where_keeps_only_the_matching_rows(tmp_path):
    d = tmp_path / "nli"
    write(d / "pairs.tsv",
          "language\tpairID\tsentence1\tsentence2\tgold_label\n"
          "en\tp1\tA man sleeps.\tA man rests.\tentailment\n"
          "es\tp1\tUn hombre duerme.\tUn hombre descansa.\tentailment\n"
          "en\tp2\tIt rains.\tIt is dry.\tcontradiction\n"
          "es\tp2\tLlueve.\tEstá seco.\tcontradiction\n")
    write(d / "nli.yaml", """\
name: my_nli_es
lang: es
family: nli
output: multiple_choice
source:
  format: tsv
  files: [./pairs.tsv]
  where: {language: es}
  id: pairID
doc_to_text: ""
doc_to_choice: '{{ [sentence1 + " ¿Sí? " + sentence2, sentence1 + " ¿No? " + sentence2] }}'
doc_to_target: "{{ ['entailment', 'contradiction'].index(gold_label) }}"
metrics: [acc]
""")
    spec = one_task(d, "my_nli_es")
    docs = load_docs(spec, tmp_path)
    assert [(doc.id, doc.fields["sentence1"]) for doc in docs] == [
        ("p1", "Un hombre duerme."), ("p2", "Llueve.")]
    insts = [render(spec, doc) for doc in docs]
    assert insts[0].context == ""
    assert insts[0].choices == ("Un hombre duerme. ¿Sí? Un hombre descansa.",
                                "Un hombre duerme. ¿No? Un hombre descansa.")
    assert [i.gold for i in insts] == [0, 1]
    assert len(load_docs(spec, tmp_path, limit=1)) == 1


LINES_TASK = """\
name: my_translation
lang: es
target_lang: en
family: translation
output: generate
source:
  format: lines
  files:
    src: ./src.txt
    tgt: ./tgt.txt
doc_to_text: "Spanish: {{ src }}\\nEnglish:"
doc_to_target: "{{ tgt }}"
target_delimiter: ""
generation: {until: ["\\n"], max_tokens: 32}
metrics: [bleu, chrf, lang_ok]
"""


def test_lines_source_zips_two_files_line_by_line(tmp_path):
    d = tmp_path / "mt"
    write(d / "src.txt", "Hola.\nBuenos días.\nGracias.\n")
    write(d / "tgt.txt", "Hello.\nGood morning.\nThank you.\n")
    write(d / "mt.yaml", LINES_TASK)
    spec = one_task(d, "my_translation")
    docs = load_docs(spec, tmp_path)
    assert [d.id for d in docs] == ["0", "1", "2"]
    inst = render(spec, docs[1])
    assert inst.context == "Spanish: Buenos días.\nEnglish:"
    assert inst.gold == "Good morning."
    assert inst.choices == ()
    assert inst.until == ("\n",) and inst.max_tokens == 32
    assert spec.output_lang == "en"


def test_lines_source_with_files_of_different_lengths_is_an_error(tmp_path):
    d = tmp_path / "mt"
    write(d / "src.txt", "Hola.\nBuenos días.\nGracias.\n")
    write(d / "tgt.txt", "Hello.\nGood morning.\n")
    write(d / "mt.yaml", LINES_TASK)
    spec = one_task(d, "my_translation")
    with pytest.raises(UserError) as exc:
        load_docs(spec, tmp_path)
    msg = str(exc.value)
    assert "my_translation" in msg and "src: 3" in msg and "tgt: 2" in msg
    assert count_docs(spec, tmp_path) is None


# ---------------------------------------------------------------- templates


def task_with(folder: Path, **fields: str):
    """The user task of `user_dir` with some template fields replaced."""
    text = MC_TASK.format(name="my_task")
    for key, value in fields.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}:")]
        lines.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")
        text = "\n".join(lines) + "\n"
    write(folder / "my_task.yaml", text)
    jsonl(folder / "items.jsonl", [{"id": "a1", "q": "¿Llueve?", "label": 1}])
    spec = one_task(folder, "my_task")
    return spec, load_docs(spec, folder)[0]


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ q.__class__ }}",
        "Q: {{ q.__class__.__base__.__subclasses__() }}",
    ],
)
def test_templates_are_sandboxed(tmp_path, template):
    """Refused when the task file is read, naming the file and the line of the key."""
    with pytest.raises(TaskSpecError) as exc:
        task_with(tmp_path / "t", doc_to_text=template)
    assert "my_task.yaml, line " in str(exc.value) and "doc_to_text" in str(exc.value)


@pytest.mark.parametrize(
    "field,template",
    [
        ("doc_to_text", "Pregunta: {{ qq }}"),
        ("doc_to_text", "{{ qq }}"),
        ("doc_to_target", "{{ lable }}"),
        ("doc_to_choice", "{{ [q, qq] }}"),
    ],
)
def test_misspelt_field_is_an_error_naming_the_task(tmp_path, field, template):
    """A field that no row has is the template's fault, found before any row is rendered."""
    with pytest.raises(TaskSpecError) as exc:
        task_with(tmp_path / "t", **{field: template})
    msg = str(exc.value)
    assert "task my_task" in msg and "my_task.yaml, line " in msg and field in msg
    assert "which no row of the data has" in msg


def test_misspelt_field_in_a_generation_target_is_an_error_naming_the_task(tmp_path):
    d = tmp_path / "mt"
    write(d / "src.txt", "Hola.\n")
    write(d / "tgt.txt", "Hello.\n")
    write(d / "mt.yaml", LINES_TASK.replace("{{ tgt }}", "{{ target }}"))
    spec = one_task(d, "my_translation")
    with pytest.raises(TaskSpecError) as exc:
        load_docs(spec, tmp_path)
    assert "my_translation" in str(exc.value) and "'target'" in str(exc.value)


def test_expression_keeps_its_type_and_text_renders_as_text(tmp_path):
    spec, doc = task_with(tmp_path / "t", doc_to_text="{{ q }} ({{ label + 1 }})",
                          doc_to_target="{{ 'sí' }}")
    inst = render(spec, doc)
    assert inst.context == "¿Llueve? (2)"
    assert inst.gold == 1  # the target string "sí" resolves to its index in the choices


def test_gold_out_of_range_names_the_document(tmp_path):
    spec, doc = task_with(tmp_path / "t", doc_to_target="{{ label + 5 }}")
    with pytest.raises(RowError) as exc:
        render(spec, doc)
    assert exc.value.exit_code == 2
    assert "my_task" in str(exc.value) and "a1" in str(exc.value) and "6" in str(exc.value)


# ---------------------------------------------------------------- loading errors


def test_duplicate_task_name_across_folders_is_an_error(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "one.yaml", MC_TASK.format(name="dup_task"))
    write(b / "two.yaml", MC_TASK.format(name="dup_task"))
    with pytest.raises(TaskSpecError) as exc:
        load_task_specs([a, b])
    msg = str(exc.value)
    assert "dup_task" in msg and str(a / "one.yaml") in msg and str(b / "two.yaml") in msg


def test_user_task_cannot_shadow_a_builtin(tmp_path):
    write(tmp_path / "x.yaml", MC_TASK.format(name="xnli_es"))
    with pytest.raises(TaskSpecError) as exc:
        load_task_specs([tmp_path])
    assert "xnli_es" in str(exc.value) and str(tmp_path / "x.yaml") in str(exc.value)


@pytest.mark.parametrize(
    "bad,expected",
    [
        (("lang: es", "lang: xx"), "lang"),
        (("family: nli", "family: Poetry"), "family"),  # a family of one's own, but not one lowercase word
        (("metrics: [acc]", "metrics: [bleu]"), "bleu"),
        (("  format: jsonl", "  format: parquet"), "parquet"),
        (("name: my_task\n", ""), "name"),
    ],
    ids=["lang", "family", "metric-of-the-wrong-output", "format", "missing-name"],
)
def test_invalid_field_names_the_file(tmp_path, bad, expected):
    path = write(tmp_path / "bad.yaml", MC_TASK.format(name="my_task").replace(*bad, 1))
    with pytest.raises(TaskSpecError) as exc:
        load_task_specs([tmp_path])
    assert str(path) in str(exc.value) and expected in str(exc.value)


# ---------------------------------------------------------------- selection


@pytest.fixture(scope="module")
def specs():
    return load_task_specs()


def names(tasks) -> list[str]:
    return [t.name for t in tasks]


def test_select_by_name_group_and_family(specs):
    assert names(select_tasks(specs, ["xnli_eu"], None)) == ["xnli_eu"]
    assert names(select_tasks(specs, ["xnli"], None)) == [
        "xnli_en", "xnli_es", "xnli_eu", "xnli_eu_native"]
    # a family selects the real tasks only, never the smoke-test sample suite
    nli = names(select_tasks(specs, ["nli"], None))
    assert set(nli) == {"qnlieu", "xnli_en", "xnli_es", "xnli_eu", "xnli_eu_native", "teca",
                        "assin_entailment", "assin_paraphrase"}
    assert len(names(select_tasks(specs, ["translation"], None))) == 10
    # a task named twice (by name and by group) is selected once, in request order
    assert names(select_tasks(specs, ["xnli_es", "xnli"], None)) == [
        "xnli_es", "xnli_en", "xnli_eu", "xnli_eu_native"]


def test_select_filters_by_language(specs):
    assert names(select_tasks(specs, ["xnli", "xstorycloze"], ["eu"])) == [
        "xnli_eu", "xnli_eu_native", "xstorycloze_eu"]
    assert set(names(select_tasks(specs, ["flores"], ["eu"]))) == {"flores_en-eu", "flores_eu-en"}
    assert names(select_tasks(specs, ["irosva"], ["es", "en"])) == [
        "irosva_cu", "irosva_es", "irosva_mx"]


def test_no_task_names_means_the_sample_suite(specs):
    chosen = select_tasks(specs, None, None)
    assert len(chosen) == 22  # 6 story endings, 6 NLI, 10 translation directions
    assert all(t.path.parent == SAMPLE_DIR for t in chosen)
    assert {t.lang for t in chosen} == {"es", "ca", "eu", "gl", "pt", "en"}
    assert names(select_tasks(specs, None, ["eu"])) == [
        "sample_commonsense_eu", "sample_nli_eu", "sample_translation_en-eu",
        "sample_translation_eu-en"]


def test_selection_errors_are_bad_choices(specs):
    with pytest.raises(UserError) as exc:
        select_tasks(specs, ["nosuch"], None)
    assert exc.value.exit_code == 2 and "xstorycloze" in str(exc.value)
    with pytest.raises(UserError) as exc:
        select_tasks(specs, ["xnli"], ["xx"])
    assert exc.value.exit_code == 2 and "es, ca, eu, gl, pt, en" in str(exc.value)
    with pytest.raises(UserError) as exc:  # valid names and language, but no overlap
        select_tasks(specs, ["xstorycloze"], ["gl"])
    assert exc.value.exit_code == 2 and "gl" in str(exc.value)


# ---------------------------------------------------------------- built-in tasks

BUILTIN = {
    "xstorycloze_es": 1511, "xstorycloze_eu": 1511, "xstorycloze_en": 1511,
    "xnli_es": 5010, "xnli_eu": 5010, "xnli_en": 5010, "xnli_eu_native": 621,
    "qnlieu": 238,
    **{f"flores_{pair}": 1012 for pair in (
        "es-en", "en-es", "ca-en", "en-ca", "eu-en", "en-eu", "gl-en", "en-gl", "pt-en", "en-pt")},
    "mgsm_direct_es": 250, "mgsm_direct_en": 250,
    "bec_eu": 1302, "bhtc_eu": 1854, "vaxx_eu": 312,
    "irosva_es": 600, "irosva_mx": 600, "irosva_cu": 600,
    "xquad_es": 1190, "xquad_en": 1190, "xquad_ca": 1189, "catalanqa": 2135, "faquad": 900,
    "teca": 2117, "assin_entailment": 4000, "assin_paraphrase": 4000,
}


def test_builtin_task_list(specs):
    builtin = {name for name, s in specs.items() if s.path.parent == BUILTIN_DIR}
    assert builtin == set(BUILTIN)
    assert sum(name.startswith("flores_") for name in builtin) == 10


def test_builtin_tasks_without_data_count_as_missing(specs, tmp_path):
    assert count_docs(specs["xnli_es"], tmp_path) is None


@pytest.mark.parametrize("name,size", sorted(BUILTIN.items()))
def test_builtin_task_has_the_published_size(specs, name, size, data_dir):
    assert count_docs(specs[name], data_dir) == size


# ---------------------------------------------------------------- SQuAD JSON and ASSIN XML

SQUAD = {"version": "1", "data": [{"title": "T", "paragraphs": [
    {"context": "Ana vive en Vigo.", "qas": [
        {"id": "q1", "question": "¿Dónde vive Ana?", "answers": [{"text": "en Vigo", "answer_start": 999}]},
        {"id": "q2", "question": "¿Quién?", "answers": []},
    ]},
    {"context": "Otro párrafo.", "qas": [
        {"id": "q3", "question": "¿Qué?", "answers": [{"text": "Otro", "answer_start": 0},
                                                      {"text": "Otro párrafo", "answer_start": 0}]},
    ]},
]}]}


def _squad_task(tmp_path):
    (tmp_path / "qa.json").write_text(json.dumps(SQUAD, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "qa.yaml").write_text(
        "name: qa_test\nlang: es\nfamily: reading\noutput: generate\n"
        "source: {format: squad, files: [./qa.json], id: id}\n"
        "doc_to_text: \"Contexto: {{ context }}\\nPregunta: {{ question }}\\nRespuesta:\"\n"
        "doc_to_target: '{{ answers[0][\"text\"] }}'\n"
        "metrics: [squad_em, squad_f1]\ngeneration: {until: [\"\\n\"]}\n", encoding="utf-8")
    return load_task_specs([tmp_path])["qa_test"]


def test_squad_source_gives_one_item_per_question_scored_on_the_first_answer_text(tmp_path):
    from iberlite.tasks.items import load_items

    items = load_items(_squad_task(tmp_path), tmp_path)
    assert [i.doc_id for i in items.instances] == ["q1", "q3"]
    first = items.instances[0]
    assert first.context == "Contexto: Ana vive en Vigo.\nPregunta: ¿Dónde vive Ana?\nRespuesta:"
    assert first.gold == "en Vigo"  # the wrong answer_start (999) is never read
    assert items.instances[1].gold == "Otro"
    # the question without an answer is skipped and counted, naming its place in the file
    assert [(f.line, f.kind) for f in items.faults] == [(2, "missing_field")]


ASSIN = """<?xml version='1.0' encoding='utf-8'?>
<entailment-corpus>
    <pair entailment="Entailment" id="1" similarity="4.0">
        <t>O tempo abate-se sobre o Algarve.</t>
        <h>O Algarve foi afetado.</h>
    </pair>
    <pair entailment="None" id="2" similarity="1.5">
        <t>Uma frase.</t>
        <h>Outra frase.</h>
    </pair>
    <pair entailment="Contradiction" id="3" similarity="1.0">
        <t>A.</t>
        <h>B.</h>
    </pair>
</entailment-corpus>
"""


def test_assin_xml_source_reads_pairs_and_maps_labels_as_the_hub_does(tmp_path, specs):
    from dataclasses import replace

    from iberlite.tasks.items import load_items

    (tmp_path / "a.xml").write_text(ASSIN, encoding="utf-8")
    spec = specs["assin_entailment"]
    spec = replace(spec, source=replace(spec.source, files=("a.xml",)))
    items = load_items(spec, tmp_path)
    assert [i.gold for i in items.instances] == [1, 0]  # Entailment -> 1, None -> 0
    assert items.instances[0].choices == (
        "O tempo abate-se sobre o Algarve., certo? Também, O Algarve foi afetado.",
        "O tempo abate-se sobre o Algarve., certo? Sim, O Algarve foi afetado.",
    )
    # a label ASSIN does not have is a row fault, not a silent class
    assert [(f.line, f.kind) for f in items.faults] == [(3, "label_out_of_range")]


def test_teca_json_with_a_data_list_is_read(specs, data_dir):
    docs = load_docs(specs["teca"], data_dir, 2)
    assert [d.id for d in docs] == ["vila_499", "te1_13169"]
