"""The built-in tasks render exactly the lm-evaluation-harness 0.4.13 prompts.

Every expected string below was derived by hand from the lm-eval 0.4.13 task YAML (named in each
test) and the first row of the real data file, and is written out literally: a change to a
template, a preprocessing step or the loader that alters what the model sees fails here.
Needs the evaluation data (IBERLITE_DATA_DIR, else ../shared/data beside the repository).
"""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
try:
    import iberlite  # noqa: F401
except ImportError:  # package not installed into the venv yet: use the src tree
    sys.path.insert(0, str(REPO / "src"))

from iberlite.tasks.data import load_docs  # noqa: E402
from iberlite.tasks.registry import load_task_specs  # noqa: E402
from iberlite.tasks.render import render  # noqa: E402


@pytest.fixture(scope="module")
def specs(data_dir):
    """The built-in tasks, bound to the data dir (the `data_dir` fixture skips without data)."""
    return {name: (spec, data_dir) for name, spec in load_task_specs().items()}


def nth(specs, name, n=0):
    """Render document `n` (file order) of a task; returns (doc, instance)."""
    spec, data_dir = specs[name]
    docs = load_docs(spec, data_dir, n + 1)
    assert len(docs) == n + 1, f"{name} has fewer than {n + 1} documents"
    return docs[n], render(spec, docs[n])


# ------------------------------------------------------------------ XStoryCloze

def test_xstorycloze_es(specs):
    # lm-eval xstorycloze/default_ar.yaml (+ default_es.yaml): sentences joined by ' ',
    # choices [sentence_quiz1, sentence_quiz2], target answer_right_ending - 1, delimiter " ".
    doc, inst = nth(specs, "xstorycloze_es")
    assert doc.id == "fec30953-c68e-4d9d-9698-384bfe8fe857"
    assert inst.context == (
        "Me volví fan de Ley y Orden en 2011. Me estaba recuperando de un ataque cerebral. "
        "Cuando volví a casa, intenté ver todos los episodios. "
        "Me costó ver del tirón una serie que lleva 20 años."
    )
    assert inst.choices == (
        "Creo que Ley y Orden es una de las peores series que se han hecho.",
        "Al final, los vi todos.",
    )
    assert inst.gold == 1
    assert inst.target_delimiter == " "


# ------------------------------------------------------------------ XNLI

def test_xnli_es_spanish_bench_with_preprocessing(specs):
    # lm-eval spanish_bench/xnli_es_spanish_bench.yaml + utils.process_doc_nli.
    # Raw row: "Bien, ni estaba pensando en eso, pero estaba tan frustrada y empecé a hablar con
    # él de nuevo." / "No he vuelto a hablar con él." / 2. process_doc_nli drops the premise's
    # final "." and lowercases the hypothesis's first letter (it already ends with ".").
    doc, inst = nth(specs, "xnli_es")
    premise = (
        "Bien, ni estaba pensando en eso, pero estaba tan frustrada y empecé a hablar con él "
        "de nuevo"
    )
    hypothesis = "no he vuelto a hablar con él."
    assert doc.fields["premise"] == premise
    assert doc.fields["hypothesis"] == hypothesis
    assert inst.context == ""
    assert inst.choices == (
        "Bien, ni estaba pensando en eso, pero estaba tan frustrada y empecé a hablar con él "
        "de nuevo, ¿correcto? Sí, no he vuelto a hablar con él.",
        "Bien, ni estaba pensando en eso, pero estaba tan frustrada y empecé a hablar con él "
        "de nuevo, ¿correcto? Así que, no he vuelto a hablar con él.",
        "Bien, ni estaba pensando en eso, pero estaba tan frustrada y empecé a hablar con él "
        "de nuevo, ¿correcto? No, no he vuelto a hablar con él.",
    )
    assert inst.gold == 2
    assert inst.target_delimiter == ""


def test_xnli_eu(specs):
    # lm-eval xnli_eu/xnli_eu.yaml: no preprocessing, and target_delimiter left at lm-eval's
    # default " " (only xnli_es_spanish_bench sets it to '').
    _, inst = nth(specs, "xnli_eu")
    premise = (
        "Beno, horretan pentsatzen ere ez nintzen ari, baina hain frustratuta nengoen, "
        "berriro hitz egin nuen harekin."
    )
    hypothesis = "Ez dut berriz harekin hitz egin."
    assert inst.context == ""
    assert inst.choices == (
        premise + ", ezta? Bai, " + hypothesis,
        premise + ", ezta? Gainera, " + hypothesis,
        premise + ", ezta? Ez, " + hypothesis,
    )
    assert inst.choices[0] == (
        "Beno, horretan pentsatzen ere ez nintzen ari, baina hain frustratuta nengoen, "
        "berriro hitz egin nuen harekin., ezta? Bai, Ez dut berriz harekin hitz egin."
    )
    assert inst.gold == 2
    assert inst.target_delimiter == " "


def test_xnli_eu_undoes_the_files_csv_quoting(specs):
    # Line 848 of xnli-eu-original.tsv (document 846) is written CSV-style:
    #   "ez dakit, ... pentsatu nuen ""zer?"""<TAB>Uste dut mendian zegoela.<TAB>0
    # The dataset text has no enclosing quotes and single inner quotes.
    _, inst = nth(specs, "xnli_eu", 846)
    assert inst.choices[0] == (
        'ez dakit, baina oraindik mendian pentsatu nuen, eta hori esan zuenean pentsatu nuen '
        '"zer?", ezta? Bai, Uste dut mendian zegoela.'
    )
    assert inst.gold == 0


# ------------------------------------------------------------------ BasqueGLUE

def test_qnlieu(specs):
    # lm-eval basqueglue/qnli.yaml; label not_entailment = 1 = "ez".
    doc, inst = nth(specs, "qnlieu")
    assert doc.id == "0"
    assert inst.context == (
        "Eta zein beste kritika egiten diote?\n"
        "Zenbait arrazoi direla eta biztanleriaren sektore batek Al Gore kritikatzen du.\n"
        "Galdera: aurreko galderari erantzuten al dio emandako testuak?\n"
        "Erantzuna:"
    )
    assert inst.choices == ("bai", "ez")
    assert inst.gold == 1
    assert inst.target_delimiter == " "


def test_bec_eu(specs):
    # lm-eval basqueglue/bec.yaml; label "N" = 0 = "negatiboa". The tweet holds a literal
    # backslash-n (two characters), kept as in the release.
    doc, inst = nth(specs, "bec_eu")
    assert doc.id == "0"
    assert inst.context == (
        'Testua: "Emandako hitza bete egingo dut" Urkullu\\nBa galdeketa enegarrenez '
        "daramazue programan (ta zuen AHTa...)\\n#I25debatea #URL\n"
        "Galdera: Nolako jarrera agertzen du aurreko testuak?\n"
        "Erantzuna:"
    )
    assert inst.choices == ("negatiboa", "neutrala", "positiboa")
    assert inst.gold == 0
    assert inst.target_delimiter == " "


# ------------------------------------------------------------------ FLORES

def test_flores_en_es(specs):
    # lm-eval spanish_bench/flores_es/flores_en-es.yaml: the single-quoted YAML scalar with an
    # empty line renders "English sentence: {src}\nSpanish sentence:" (no trailing space);
    # target_delimiter '', stop at "\n".
    _, inst = nth(specs, "flores_en-es")
    assert inst.context == (
        'English sentence: "We now have 4-month-old mice that are non-diabetic that used to be '
        'diabetic," he added.\nSpanish sentence:'
    )
    assert inst.choices == ()
    assert inst.gold == (
        "«Actualmente, tenemos ratones de cuatro meses de edad que antes solían ser diabéticos "
        "y que ya no lo son», agregó."
    )
    assert inst.target_delimiter == ""
    assert inst.until == ("\n",)
    assert inst.max_tokens == 256


# ------------------------------------------------------------------ MGSM

def test_mgsm_direct_es_spanish_bench(specs):
    # lm-eval spanish_bench/mgsm_direct_es_spanish_bench.yaml (test split: answer is None):
    # "Pregunta: " + question + "\nRespuesta: " -- with the trailing space.
    _, inst = nth(specs, "mgsm_direct_es")
    assert inst.context == (
        "Pregunta: Los patos de Janet ponen 16 huevos por día. Ella come tres en el desayuno "
        "todas las mañanas y usa cuatro para hornear magdalenas para sus amigos todos los días. "
        "Vende lo que sobra en el mercado de productores diariamente a $2 el huevo fresco de "
        "pato. ¿Cuánto gana en dólares todos los días en el mercado de productores?"
        "\nRespuesta: "
    )
    assert inst.choices == ()
    assert inst.gold == "18"
    assert inst.target_delimiter == ""
    assert inst.until == ("Pregunta:", "</s>", "<|im_end|>")
    assert inst.max_tokens == 256


def test_mgsm_target_drops_the_thousands_comma(specs):
    # Line 147 of mgsm_es.tsv ends in "2,125"; the hub copy lm-eval reads holds the int 2125.
    _, inst = nth(specs, "mgsm_direct_es", 146)
    assert inst.gold == "2125"


# ------------------------------------------------------------------ IroSvA (iberlite prompt)

def test_irosva_es(specs):
    # No lm-eval task. The test file's IS_IRONIC is "?"; the truth file, joined on ID, gives
    # 002dec9f773cc17edcc7b02acb8e8926,FRANCO,0 -> "no".
    doc, inst = nth(specs, "irosva_es")
    assert doc.id == "002dec9f773cc17edcc7b02acb8e8926"
    assert inst.context == (
        "Mensaje: ► ¿Suspenden exhumación de Francisco Franco? El caso da un giro inesperado "
        "https://t.co/LaOsjUlO5V https://t.co/KnNBTfUoNR\n"
        "Pregunta: ¿Es irónico el mensaje anterior?\n"
        "Respuesta:"
    )
    assert inst.choices == ("no", "sí")
    assert inst.gold == 0
    assert inst.target_delimiter == " "
