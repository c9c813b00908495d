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


# ------------------------------------------------------------------ reading comprehension

def test_xquad_es(specs):
    # lm-eval xquad/xquad_es.yaml (+ xquad_common_yaml): "Contexto: {{context}}\n\nPregunta:
    # {{question}}\n\nRespuesta:", target answers["text"][0], stop at "\n". The first context of
    # xquad.es.json starts with a byte-order mark (U+FEFF), kept as the file (and the hub) has it.
    _, inst = nth(specs, "xquad_es")
    assert inst.context.startswith("Contexto: \ufeffLos Panthers, que además de liderar las ")
    assert inst.context.endswith(
        "consiguió 4 intercepciones, de las cuales dos se convirtieron en touchdowns.\n\n"
        "Pregunta: ¿Cuántos puntos dejaron escapar en defensa los Panthers?\n\nRespuesta:"
    )
    assert len(inst.context) == 1546
    assert inst.doc_id == "56beb4343aeaaa14008c925b"
    assert inst.gold == "308"
    assert inst.until == ("\n",)
    assert inst.max_tokens == 256


def test_xquad_en_is_parallel_to_xquad_es(specs):
    _, inst = nth(specs, "xquad_en")
    assert inst.context.startswith("Context: The Panthers defense gave up just 308 points, ")
    assert inst.context.endswith("\n\nQuestion: How many points did the Panthers defense surrender?"
                                 "\n\nAnswer:")
    assert inst.doc_id == "56beb4343aeaaa14008c925b"
    assert inst.gold == "308"


def test_xquad_ca(specs):
    # lm-eval catalan_bench/xquad_ca.yaml: "Context: ...\n\nPregunta: ...\n\nResposta:",
    # target answers[0]["text"].
    _, inst = nth(specs, "xquad_ca")
    assert inst.context.startswith("Context: La defensa dels Panthers va cedir només 308 punts, ")
    assert inst.context.endswith(
        "dues de les quals es van convertir en touchdowns.\n\n"
        "Pregunta: Quants punts va cedir la defensa dels Panthers?\n\nResposta:"
    )
    assert inst.doc_id == "56beb4343aeaaa14008c925b"
    assert inst.gold == "308"
    assert inst.until == ("\n",)


def test_catalanqa(specs):
    # lm-eval catalan_bench/catalanqa.yaml: the same prompt as xquad_ca.
    _, inst = nth(specs, "catalanqa")
    assert inst.context == (
        "Context: Al pis superior s'hi trobaven tres grans finestrals d'arcs apuntats amb dues "
        "fines columnes on descansa la decoració de traceria gòtica. D'aquestes tres finestres "
        "només en queden dues. Totes les obertures tant de la porta com de les finestres tenen un "
        "guardapols l'extradós de les dovelles amb decoració de fulles de roure i al centre de les "
        "finestres amb un ram. A la part superior de la façana hi ha un fris d'arcs cecs, gàrgoles "
        "i pinacles. Les gàrgoles són obra de l'escultor Pere Joan, fill de Jordi de Déu, "
        "representant animals fantàstics. Als angles s'hi troben les imatges de sant Sever i santa "
        "Eulàlia sota pinacles gòtics. La de sant Sever, que es pot veure actualment, no és la "
        "imatge gòtica original sinó una que va fer l'any 1876 l'escultor Joan Flotats, ja que "
        "havia desaparegut l'anterior.\n\nPregunta: Quants finestrals hi havia al pis superior?"
        "\n\nResposta:"
    )
    assert inst.gold == "tres"
    assert inst.until == ("\n",)


def test_faquad_is_our_portuguese_prompt(specs):
    _, inst = nth(specs, "faquad")
    assert inst.context.startswith("Contexto: A Informática ou Tecnologia da Informação é um ")
    assert inst.context.endswith("(LAUDON, 2004, p.7).\n\nPergunta: Como pode ser definido um "
                                 "sistema de informação?\n\nResposta:")
    assert inst.gold.startswith("um conjunto de componentes inter-relacionados que coleta")
    assert inst.until == ("\n",)


# ------------------------------------------------------------------ Catalan / Portuguese NLI

def test_teca_catalan_bench(specs):
    # lm-eval catalan_bench/teca.yaml + utils.process_doc_nli: premise (final punctuation
    # dropped) + ", correcte? Sí, " / "A més, " / "No, " + hypothesis (first letter lowercased,
    # "." added); target_delimiter ''; label 1 (neutral).
    _, inst = nth(specs, "teca")
    premise = "Un jove denuncia una agressió homòfoba durant la festa major de Castelló d’Empúries"
    hypothesis = "és l'única denúncia d'aquestes característiques que s'ha produït aquests dies."
    assert inst.context == ""
    assert inst.choices == (
        f"{premise}, correcte? Sí, {hypothesis}",
        f"{premise}, correcte? A més, {hypothesis}",
        f"{premise}, correcte? No, {hypothesis}",
    )
    assert inst.gold == 1
    assert inst.target_delimiter == ""


def test_assin_entailment_and_paraphrase(specs):
    # lm-eval portuguese_bench/assin_{entailment,paraphrase}.yaml: no preprocessing, so the
    # premise keeps its final "." before ", certo?"; target 0 if entailment_judgment == 0
    # (NONE) else 1. The first pair of the pt-PT test file is an Entailment.
    premise = "Mau tempo abate-se sobre o Algarve e inunda a baixa de Albufeira."
    hypothesis = "A baixa de Albufeira foi afetada pelo mau tempo."
    _, ent = nth(specs, "assin_entailment")
    assert ent.choices == (f"{premise}, certo? Também, {hypothesis}", f"{premise}, certo? Sim, {hypothesis}")
    _, par = nth(specs, "assin_paraphrase")
    assert par.choices == (f"{premise}, certo? Não, {hypothesis}", f"{premise}, certo? Sim, {hypothesis}")
    assert ent.gold == par.gold == 1
    assert ent.context == par.context == ""
    assert ent.target_delimiter == par.target_delimiter == ""
    # pair 2001 is the first of the pt-BR file: the two variants are read in that order
    _, first_br = nth(specs, "assin_entailment", 2000)
    assert first_br.choices[1] == (
        "No Brasil, 809 instituições participarão da Primavera dos Museus neste ano., certo? Sim, "
        "Começa nesta segunda-feira, em todo o Brasil, a Primavera dos Museus."
    )
    assert first_br.gold == 0  # entailment="None"
