"""Document adapters lm-eval's local task copies call (`process_docs`).

The data dir holds the original release files; lm-eval's task YAMLs read the Hugging Face
copies, whose column names and label types differ. These functions only rename and retype,
so lm-eval's own templates, choices and metrics apply unchanged.
"""

from __future__ import annotations

_XSTORYCLOZE_COLUMNS = {
    "InputStoryid": "story_id",
    "InputSentence1": "input_sentence_1",
    "InputSentence2": "input_sentence_2",
    "InputSentence3": "input_sentence_3",
    "InputSentence4": "input_sentence_4",
    "RandomFifthSentenceQuiz1": "sentence_quiz1",
    "RandomFifthSentenceQuiz2": "sentence_quiz2",
    "AnswerRightEnding": "answer_right_ending",
}
_QNLI_LABELS = ["entailment", "not_entailment"]  # the hub's ClassLabel order


def xstorycloze(dataset):
    """Release TSV column names -> the hub's (juletxara/xstory_cloze)."""
    return dataset.rename_columns(_XSTORYCLOZE_COLUMNS)


def qnli(dataset):
    """BasqueGLUE jsonl label strings -> the hub's class ids."""
    return dataset.map(lambda d: {"label": _QNLI_LABELS.index(d["label"])})


def mgsm(dataset):
    """MGSM TSV (question, answer) -> the hub's test rows: no worked answer, an integer
    answer_number (four TSV answers carry a thousands comma)."""
    return dataset.map(lambda d: {"answer": None,
                                  "answer_number": int(str(d["answer_number"]).replace(",", ""))})


def _questions(dataset):
    """SQuAD JSON articles (the `data` list, read by the json builder) -> one row per question."""
    for article in dataset:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                yield article, para, qa


def squad_xquad(dataset):
    """SQuAD JSON articles -> google/xquad's rows: id, context, question, and answers as
    {text: [...], answer_start: [...]}."""
    import datasets

    return datasets.Dataset.from_list([
        {"id": qa["id"], "context": para["context"], "question": qa["question"],
         "answers": {"text": [a["text"] for a in qa["answers"]],
                     "answer_start": [a["answer_start"] for a in qa["answers"]]}}
        for _, para, qa in _questions(dataset)])


def squad_list(dataset):
    """SQuAD JSON articles -> projecte-aina's (xquad-ca, catalanqa) rows: id, title, context,
    question, and answers as a list of {text, answer_start}."""
    import datasets

    return datasets.Dataset.from_list([
        {"id": qa["id"], "title": article["title"], "context": para["context"],
         "question": qa["question"],
         "answers": [{"text": a["text"], "answer_start": a["answer_start"]} for a in qa["answers"]]}
        for article, para, qa in _questions(dataset)])
