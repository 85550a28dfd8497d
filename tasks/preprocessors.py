"""T5's text-to-text formats for GLUE, SuperGLUE and MRQA, as tf.data preprocessors.

Written to produce, string for string, what ``t5.data.preprocessors`` (``glue``, ``stsb``, ``wsc``,
``wsc_simple``, ``record``) and prompt tuning's ``remove_first_text_token`` and ``mrqa`` produce, because the papers'
numbers are for exactly these strings: the same TensorFlow string and regex operations, in the same order.
Which fields, in which order, with which labels comes from ``tasks.specs``, not from here.
"""
from __future__ import annotations

from typing import Callable, List, Mapping, Optional, Sequence

import seqio
import tensorflow as tf

from tasks.specs import TaskSpec

AUTOTUNE = tf.data.AUTOTUNE


@seqio.map_over_dataset
def rekey(x, key_map: Mapping[str, str]):
    """Renames fields (AX-b's sentence1/sentence2 become RTE's premise/hypothesis); keeps the others."""
    out = {k: v for k, v in x.items() if k not in key_map}
    for old, new in key_map.items():
        out[new] = x[old]
    return out


def _label_text(label, label_names: Sequence[str]):
    """The label's name; ``<unk>`` for the unlabelled test examples (label -1)."""
    return tf.cond(tf.equal(label, -1), lambda: tf.constant("<unk>"),
                   lambda: tf.gather(tf.constant(list(label_names)), label))


@seqio.map_over_dataset
def glue(x, benchmark_name: str, label_names: Sequence[str], feature_names: Sequence[str],
         flat_idx: Optional[Sequence[str]] = None):
    """``"<benchmark> key1: text1 key2: text2"`` -> label name (T5's ``glue``).

    MultiRC (``flat_idx`` given) also loses its HTML markup and stores its nested index as
    ``idx/paragraph``, ``idx/question``, ``idx/answer``, the keys T5's evaluation groups by.
    """
    parts: List = [benchmark_name]
    for key in feature_names:
        parts += [f"{key}:", x[key]]
    joined = tf.strings.join(parts, separator=" ")
    out = {}
    if flat_idx:
        joined = tf.strings.regex_replace(joined, "<br>", " ")
        joined = tf.strings.regex_replace(joined, "<(/)?b>", "")
        for part in flat_idx:
            out[f"idx/{part}"] = x["idx"][part]
    elif "idx" in x:  # WinoGrande, Yelp, SciTail and PAWS have none
        out["idx"] = x["idx"]
    out["inputs"] = joined
    out["targets"] = _label_text(x["label"], label_names)
    return out


@seqio.map_over_dataset
def stsb(x):
    """STS-B as T5 casts it: the score rounded to the nearest 0.2, written with one decimal ("3.4")."""
    joined = tf.strings.join(["stsb sentence1:", x["sentence1"], "sentence2:", x["sentence2"]], separator=" ")
    target = tf.as_string(tf.round(x["label"] * 5) / 5, precision=1)
    return {"inputs": joined, "targets": target, "idx": x["idx"]}


def _mark_span(text, span_text, span_index, mark: str):
    """Surrounds the word at ``span_index`` (when it starts with ``span_text``) by ``mark`` (T5's regex)."""
    pattern = tf.strings.regex_replace(r"^((?:\S+\s){N})(W)", "N", tf.as_string(span_index))
    pattern = tf.strings.regex_replace(pattern, "W", span_text)
    return tf.strings.regex_replace(text, pattern, r"\1{0} \2 {0}".format(mark))


@seqio.map_over_dataset
def wsc(x, label_names: Sequence[str] = ("False", "True")):
    """WSC as True/False classification: ``"wsc text: ... * candidate * ... # pronoun # ..."`` (T5's ``wsc``)."""
    text = _mark_span(x["text"], x["span1_text"], x["span1_index"], "*")
    # Marking span1 inserted two words before span2 when it came first.
    span2_index = x["span2_index"] + 2 * tf.cast(x["span1_index"] < x["span2_index"], tf.int32)
    text = _mark_span(text, x["span2_text"], span2_index, "#")
    joined = tf.strings.join(["wsc", "text:", text], separator=" ")
    return {"inputs": joined, "targets": _label_text(x["label"], label_names), "idx": x["idx"]}


# Two WSC texts whose span2_index misses the pronoun; T5 writes them out by hand (the bars are T5's).
_WSC_SPECIAL_CASES = (
    ("The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite "
     "loud. \"Good for him,\" he said. ",
     "The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite "
     "loud. \"Good for X ,\" he said."),
    ("When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in "
     "an iron safe . Some day they might want to use it , but really for now, what more could they wish for?",
     "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in "
     "an iron safe . Some day they might want to use X , but really for now, what more could they wish for?"),
)


def _wsc_blanked(x):
    """The text with the pronoun (word ``span2_index``, words split on single spaces) replaced by X."""
    words = tf.strings.split([x["text"]], sep=" ").values
    index = x["span2_index"]
    blanked = tf.strings.join([tf.strings.reduce_join(words[:index], separator=" "), "X",
                               tf.strings.reduce_join(words[index + 1:], separator=" ")], separator=" ")
    for text, fixed in _WSC_SPECIAL_CASES:
        blanked = tf.where(tf.equal(x["text"], text), tf.constant(fixed), blanked)
    return blanked


def wsc_simple(dataset: tf.data.Dataset, prefix: str = "wsc:", correct_referent_only: bool = False):
    """WSC as T5 trains it: ``"wsc: ... *pronoun* ..."`` -> the candidate's text (T5's ``wsc_simple``).

    ``label`` (1: the candidate is the referent) stays in the example for scoring; training keeps only
    label-1 examples (``correct_referent_only``), since the target is always the candidate.
    """

    def fn(x):
        marked = tf.strings.regex_replace(_wsc_blanked(x), " X ", tf.strings.join([" *", x["span2_text"], "* "]))
        return {"inputs": tf.strings.join([prefix, marked], separator=" "),
                "targets": tf.reshape(x["span1_text"], []), "label": x["label"], "idx": x["idx"]}

    if correct_referent_only:
        dataset = dataset.filter(lambda x: tf.cast(x["label"], tf.bool))
    return dataset.map(fn, num_parallel_calls=AUTOTUNE)


def record(dataset: tf.data.Dataset):
    """ReCoRD: one example per gold answer (``<unk>`` when none), input
    ``"record query: ... entities: e1, e2 passage: ..."`` with ``@highlight`` lines joined into sentences
    (T5's ``record``). ``answers`` keeps every gold answer for scoring; ``idx/passage``, ``idx/query``
    group the copies of one query."""

    def per_answer(x):
        count = tf.size(x["answers"])
        copies = tf.maximum(count, 1)

        def repeat(t):
            return tf.broadcast_to(t, tf.concat([[copies], tf.shape(t)], axis=0))

        out = {k: repeat(v) for k, v in x.items() if k != "idx"}
        out["targets"] = tf.cond(count > 0, lambda: x["answers"], lambda: tf.constant(["<unk>"]))
        out["idx"] = {"passage": repeat(x["idx"]["passage"]), "query": repeat(x["idx"]["query"])}
        return out

    def to_text(x):
        passage = tf.strings.regex_replace(x["passage"], r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ")
        passage = tf.strings.regex_replace(passage, r"\n@highlight\n", ". ")
        inputs = tf.strings.join(["record query:", x["query"], "entities:",
                                  tf.strings.reduce_join(x["entities"], separator=", "), "passage:", passage],
                                 separator=" ")
        return {"idx/passage": x["idx"]["passage"], "idx/query": x["idx"]["query"], "inputs": inputs,
                "targets": x["targets"], "answers": x["answers"]}

    dataset = dataset.map(per_answer, num_parallel_calls=AUTOTUNE).unbatch()
    return dataset.map(to_text, num_parallel_calls=AUTOTUNE)


def pad_punctuation(text):
    """T5's ``_pad_punctuation``: a space either side of every ASCII punctuation character, then each run of
    whitespace collapsed to one space (leading and trailing spaces stay)."""
    text = tf.strings.regex_replace(text, r"([[:punct:]])", r" \1 ")
    return tf.strings.regex_replace(text, r"\s+", " ")


@seqio.map_over_dataset
def mrqa(x):
    """MRQA as prompt-tuning's ``preprocessors.mrqa`` (no task word): ``"question: <q> context: <c>"`` (both
    punctuation-padded, joined by T5's ``_string_join``) -> the first answer, padded; ``answers`` keeps every
    padded gold answer for the metric and ``idx`` the question id."""
    joined = tf.strings.join(["question:", pad_punctuation(x["question"]), "context:", pad_punctuation(x["context"])],
                             separator=" ")
    answers = pad_punctuation(x["answers"])
    return {"idx": x["qid"], "inputs": tf.strings.regex_replace(joined, r"\s+", " "), "targets": answers[0],
            "answers": answers}


@seqio.map_over_dataset
def remove_first_text_token(x, key: str = "inputs"):
    """Drops the leading task word and its space (prompt tuning's "taskless" tasks)."""
    out = dict(x)
    out[key] = tf.strings.regex_replace(x[key], r"^[^ ]* ", "", replace_global=False)
    return out


def text_preprocessors(spec: TaskSpec) -> List[Callable]:
    """The text stage of a task: optional rekey, T5's format for ``spec.text_format``, taskless trim."""
    steps: List[Callable] = []
    if spec.rekey:
        steps.append(lambda ds: rekey(ds, key_map=dict(spec.rekey)))
    fmt = spec.text_format
    if fmt == "glue":
        flat = ("paragraph", "question", "answer") if spec.config == "multirc" else None
        steps.append(lambda ds: glue(ds, benchmark_name=spec.prefix, label_names=spec.label_names,
                                     feature_names=spec.feature_names, flat_idx=flat))
    elif fmt == "stsb":
        steps.append(stsb)
    elif fmt == "wsc":
        steps.append(lambda ds: wsc(ds, label_names=spec.label_names))
    elif fmt == "wsc_simple":
        steps.append(lambda ds: wsc_simple(ds, prefix=spec.prefix,
                                           correct_referent_only=spec.correct_referent_only))
    elif fmt == "record":
        steps.append(record)
    elif fmt == "mrqa":
        steps.append(mrqa)
    else:
        raise ValueError(f"{spec.name}: unknown text format {fmt!r}")
    if spec.taskless:
        steps.append(remove_first_text_token)
    return steps
