"""Local copies of lm-eval 0.4.13's own task definitions, pointed at the files in the data dir.

Each copy `include`s the installed lm-eval YAML by absolute path, so the prompt, choices,
target delimiter, generation settings, filters and metrics are lm-eval's, byte for byte. The
copy overrides only where the documents come from: `dataset_path` (a local csv/json builder),
`dataset_kwargs` (the data file, as the split lm-eval evaluates), splits the data dir does not
have (set to null; zero-shot never reads them), and, where the release file's columns differ
from the hub copy's, a `process_docs` that renames or retypes them (`lm_eval_docs`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from iberlite.errors import UserError

PREFIX = "iblref_"
_ASSIN_LABELS = ["NONE", "ENTAILMENT", "PARAPHRASE"]  # the hub's ClassLabel order  # local task names, so they never collide with lm-eval's built-in ones


@dataclass(frozen=True)
class Adapter:
    """How one iberlite task maps onto an lm-eval task and the data dir."""

    lm_yaml: str  # path under lm_eval/tasks/
    lm_task: str  # lm-eval's task name, for the record
    split: str  # the split name lm-eval evaluates for this task
    files: tuple[str, ...]  # under the data dir
    reader: str  # "tsv" (literal), "tsv_csv_quoted", "tsv_noheader", "jsonl", "lines_pair",
    # "squad_json" / "json_data" (the file as it is, its `data` list), "assin_xml"
    id_field: str | None = None  # document id in lm-eval's doc; None: row index in the file
    process_docs: str | None = None  # function in lm_eval_docs
    columns: tuple[str, ...] = ()  # for tsv_noheader, and lines_pair field names
    notes: str = ""
    split_keys: tuple[str, ...] = field(default=("training_split", "validation_split",
                                                  "test_split", "fewshot_split"))
    # a split lm-eval draws few-shot examples from: (its config key, split name, files)
    shots: tuple[str, str, tuple[str, ...]] | None = None


def _xstorycloze(lang: str) -> Adapter:
    return Adapter(f"xstorycloze/default_{lang}.yaml", f"xstorycloze_{lang}", "eval",
                   (f"xstorycloze/spring2016.val.{lang}.tsv.split_20_80_eval.tsv",), "tsv",
                   id_field="story_id", process_docs="xstorycloze",
                   shots=("training_split", "train",
                          (f"xstorycloze/spring2016.val.{lang}.tsv.split_20_80_train.tsv",)))


def _flores(src: str, tgt: str, src_code: str, tgt_code: str) -> Adapter:
    return Adapter(f"spanish_bench/flores_es/flores_{src}-{tgt}.yaml",
                   f"spanish_bench_flores_{src}-{tgt}", "devtest",
                   (f"flores200/{src_code}.devtest", f"flores200/{tgt_code}.devtest"),
                   "lines_pair", columns=(f"sentence_{src_code}", f"sentence_{tgt_code}"),
                   notes="the two line files are joined into one jsonl, each line stripped as "
                         "the hub's flores loader does")


def _xquad(lang: str) -> Adapter:
    return Adapter(f"xquad/xquad_{lang}.yaml", f"xquad_{lang}", "validation",
                   (f"xquad/xquad.{lang}.json",), "squad_json", id_field="id",
                   process_docs="squad_xquad")


def _assin(kind: str) -> Adapter:
    return Adapter(f"portuguese_bench/assin_{kind}.yaml", f"assin_{kind}", "test",
                   ("assin/assin-ptpt-test_gold.xml", "assin/assin-ptbr-test_gold.xml"), "assin_xml",
                   notes="the two XML files are written to one jsonl the way the hub's ASSIN loader "
                         "builds its default `full` config (pt-PT then pt-BR here): "
                         "entailment_judgment is the label upper-cased as a class id "
                         "(NONE 0, ENTAILMENT 1, PARAPHRASE 2)")


ADAPTERS: dict[str, Adapter] = {
    "xstorycloze_es": _xstorycloze("es"),
    "xstorycloze_en": _xstorycloze("en"),
    "xstorycloze_eu": _xstorycloze("eu"),
    "xnli_es": Adapter("spanish_bench/xnli_es_spanish_bench.yaml", "xnli_es_spanish_bench",
                       "validation", ("xnlivar/data/es/xnli-es-original.tsv",), "tsv",
                       notes="lm-eval evaluates XNLI validation; here both sides read the "
                             "test file, given to lm-eval as its validation split"),
    "xnli_eu": Adapter("xnli_eu/xnli_eu.yaml", "xnli_eu", "test",
                       ("xnlivar/data/eu/xnli-eu-original.tsv",), "tsv_csv_quoted"),
    "qnlieu": Adapter("basqueglue/qnli.yaml", "qnlieu", "test", ("basqueglue/qnli/test.jsonl",),
                      "jsonl", id_field="idx", process_docs="qnli",
                      shots=("validation_split", "validation", ("basqueglue/qnli/val.jsonl",))),
    "flores_en-es": _flores("en", "es", "eng_Latn", "spa_Latn"),
    "flores_es-en": _flores("es", "en", "spa_Latn", "eng_Latn"),
    "xquad_es": _xquad("es"),
    "xquad_en": _xquad("en"),
    "xquad_ca": Adapter("catalan_bench/xquad_ca.yaml", "xquad_ca", "test",
                        ("catalan_club_test/engine/test_data/xquad-ca/test.json",), "squad_json",
                        id_field="id", process_docs="squad_list"),
    "catalanqa": Adapter("catalan_bench/catalanqa.yaml", "catalanqa", "test",
                         ("catalan_club_test/engine/test_data/catalanqa/test.json",), "squad_json",
                         id_field="id", process_docs="squad_list"),
    # TECA keeps lm-eval's own process_docs (catalan_bench/utils.process_doc_nli)
    "teca": Adapter("catalan_bench/teca.yaml", "teca", "test",
                    ("catalan_club_test/engine/test_data/teca/test.json",), "json_data", id_field="id"),
    "assin_entailment": _assin("entailment"),
    "assin_paraphrase": _assin("paraphrase"),
    "mgsm_direct_es": Adapter("spanish_bench/mgsm_direct_es_spanish_bench.yaml",
                              "mgsm_direct_es_spanish_bench", "test", ("mgsm/mgsm_es.tsv",),
                              "tsv_noheader", process_docs="mgsm",
                              columns=("question", "answer_number")),
}


def lm_eval_tasks_dir() -> Path:
    """Where the installed lm-eval keeps its task YAMLs."""
    try:
        import lm_eval.tasks
    except ImportError as exc:
        raise UserError("The crosscheck needs the reference extra: pip install -e .[reference].") from exc
    return Path(lm_eval.tasks.__file__).parent


def adapter(task: str) -> Adapter:
    """The adapter of an iberlite task, or a user error listing the supported ones."""
    if task not in ADAPTERS:
        raise UserError(f"No lm-eval crosscheck for task {task!r}; supported: {', '.join(ADAPTERS)}.", 2)
    return ADAPTERS[task]


def _dataset_fields(a: Adapter, data_dir: Path, out_dir: Path, task: str) -> dict:
    paths = [data_dir / f for f in a.files]
    shot_paths = [data_dir / f for f in a.shots[2]] if a.shots else []
    for p in paths + shot_paths:
        if not p.is_file():
            raise UserError(f"Task {task} needs {p}, which does not exist; pass --data-dir.")
    if a.shots and a.reader not in ("tsv", "jsonl"):
        raise UserError(f"Task {task}: few-shot splits are wired for tsv and jsonl readers only.", 2)
    if a.reader == "lines_pair":
        columns = [p.read_text(encoding="utf-8").rstrip("\n").split("\n") for p in paths]
        target = out_dir / f"{task}.jsonl"
        with target.open("w", encoding="utf-8") as f:
            for values in zip(*columns, strict=True):
                f.write(json.dumps(dict(zip(a.columns, (v.strip() for v in values))),
                                   ensure_ascii=False) + "\n")
        return {"dataset_path": "json", "dataset_kwargs": {"data_files": {a.split: str(target)}}}
    if a.reader == "assin_xml":
        target = out_dir / f"{task}.jsonl"
        with target.open("w", encoding="utf-8") as f:
            for path in paths:
                for pair in ET.parse(path).getroot().iter("pair"):
                    row = {"sentence_pair_id": int(pair.attrib["id"]), "premise": pair.findtext("t"),
                           "hypothesis": pair.findtext("h"),
                           "relatedness_score": float(pair.attrib["similarity"]),
                           "entailment_judgment": _ASSIN_LABELS.index(pair.attrib["entailment"].upper())}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return {"dataset_path": "json", "dataset_kwargs": {"data_files": {a.split: str(target)}}}
    if a.reader in ("squad_json", "json_data"):  # the file as it is; its `data` list is the rows
        return {"dataset_path": "json",
                "dataset_kwargs": {"data_files": {a.split: str(paths[0])}, "field": "data"}}
    files = {a.split: str(paths[0])}
    if a.shots:
        files[a.shots[1]] = str(shot_paths[0])
    if a.reader == "jsonl":
        return {"dataset_path": "json", "dataset_kwargs": {"data_files": files}}
    kwargs: dict = {"data_files": files, "delimiter": "\t",
                    "keep_default_na": False, "na_filter": False}
    if a.reader in ("tsv", "tsv_noheader"):
        kwargs["quoting"] = 3  # csv.QUOTE_NONE: the release files are plain TSV
    if a.reader == "tsv_noheader":
        kwargs["column_names"] = list(a.columns)
    # tsv_csv_quoted: pandas' default quoting un-quotes the CSV-style fields of XNLIeu
    return {"dataset_path": "csv", "dataset_kwargs": kwargs}


def write_task_dir(tasks: list[str], data_dir: Path, out_dir: Path) -> dict[str, str]:
    """Write a local lm-eval task per iberlite task; return iberlite name -> local name."""
    lm_dir = lm_eval_tasks_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "utils.py").write_text(
        "# process_docs adapters for the local task copies\n"
        "from iberlite.fidelity.lm_eval_docs import (  # noqa: F401\n"
        "    mgsm, qnli, squad_list, squad_xquad, xstorycloze)\n")
    names = {}
    for task in tasks:
        a = adapter(task)
        source = lm_dir / a.lm_yaml
        cfg: dict = {"include": str(source), "task": PREFIX + task, "dataset_name": None}
        cfg.update(_dataset_fields(a, data_dir, out_dir, task))
        for key in a.split_keys:
            cfg[key] = a.split if _split_role(a, key) else None
        if a.shots:  # the split lm-eval's own rule draws shots from, as its config names it
            cfg[a.shots[0]] = a.shots[1]
        text = yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)
        if a.process_docs:
            text += f"process_docs: !function utils.{a.process_docs}\n"
        (out_dir / f"{PREFIX}{task}.yaml").write_text(text, encoding="utf-8")
        names[task] = PREFIX + task
    return names


def _split_role(a: Adapter, key: str) -> bool:
    """Whether `key` is the split lm-eval evaluates this task on (test, else validation)."""
    if a.split in ("test", "devtest"):
        return key == "test_split"
    return key == "validation_split"
