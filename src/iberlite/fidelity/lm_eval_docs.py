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
