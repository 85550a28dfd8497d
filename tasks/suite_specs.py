"""The papers' other data sets as task-spec entries: MRQA 2019 (Lester et al. Table 1, EPT's QA) and EPT's
"Others" (WinoGrande, Yelp polarity, SciTail, PAWS-Wiki). Standard library only; ``tasks.specs`` builds
``TaskSpec``s from these entries beside GLUE and SuperGLUE.

MRQA follows google-research/prompt-tuning (``prompt_tuning/data/qa.py``, ``preprocessors.mrqa``): inputs
``question: <q> context: <c>`` with T5's punctuation padding, no task word, target the first answer, every
answer kept for SQuAD's metric (``t5.evaluation.metrics.squad`` after ``t5.data.postprocessors.qa``); the
out-of-domain sets offer their one split (TFDS ``test``) as ``validation``, as prompt-tuning does. SQuAD comes
through MRQA's files (``mrqa_squad_v100``). Names: ``mrqa_<tfds config>_v100``.

The four "Others" have no format in ``t5``; they get T5's GLUE rule (``<task> key: text ...``, text fields
sorted, the label's name as target; ``taskless_`` drops the task word) with label names in words where
TFDS's are digits: WinoGrande ``option1``/``option2`` (like COPA's ``choice1``/``choice2``), Yelp
``negative``/``positive`` (like SST-2), SciTail ``entails``/``neutral`` and PAWS ``different_meaning``/
``paraphrase`` (TFDS's names). WinoGrande trains on its largest training set (TFDS ``train_xl``).
"""
from __future__ import annotations

from typing import List

from tasks import metrics, postprocessors
from tasks.official_files import MRQA_FILES, MRQA_OUT_OF_DOMAIN

MRQA_VERSION = "1.0.0"


def mrqa_entries() -> List[dict]:
    """One entry per MRQA set: in-domain ones with train and validation, out-of-domain ones validation only."""
    entries = []
    for config in MRQA_FILES:
        out_of_domain = config in MRQA_OUT_OF_DOMAIN
        entries.append(dict(
            name=f"mrqa_{config}_v100", benchmark="mrqa", config=config, tfds_name=f"mrqa/{config}:{MRQA_VERSION}",
            text_format="mrqa", prefix="", feature_names=("question", "context"), label_names=None,
            postprocessor=postprocessors.qa, metric_fns=(metrics.squad,),
            splits=("validation",) if out_of_domain else ("train", "validation"),
            source_splits={"validation": "test"} if out_of_domain else None, variants=(False,)))
    return entries


def other_entries() -> List[dict]:
    """WinoGrande, Yelp polarity, SciTail, PAWS-Wiki (EPT's "Others", after Asai et al. 2022): accuracy."""
    acc = (metrics.accuracy,)
    return [
        dict(name="winogrande_v120", benchmark="winogrande", config="winogrande", tfds_name="winogrande:1.2.0",
             text_format="glue", prefix="winogrande", feature_names=("option1", "option2", "sentence"),
             label_names=("option1", "option2"), metric_fns=acc, splits=("train", "validation", "test"),
             source_splits={"train": "train_xl"}),
        dict(name="yelp_polarity_v020", benchmark="yelp_polarity", config="yelp_polarity",
             tfds_name="yelp_polarity_reviews:0.2.0", text_format="glue", prefix="yelp_polarity",
             feature_names=("text",), label_names=("negative", "positive"), metric_fns=acc, splits=("train", "test")),
        dict(name="scitail_v100", benchmark="scitail", config="scitail", tfds_name="sci_tail:1.0.0",
             text_format="glue", prefix="scitail", feature_names=("hypothesis", "premise"),
             label_names=("entails", "neutral"), metric_fns=acc, splits=("train", "validation", "test")),
        dict(name="paws_wiki_v110", benchmark="paws_wiki", config="paws_wiki",
             tfds_name="paws_wiki/labeled_final_tokenized:1.1.0", text_format="glue", prefix="paws_wiki",
             feature_names=("sentence1", "sentence2"), label_names=("different_meaning", "paraphrase"),
             metric_fns=acc, splits=("train", "validation", "test")),
    ]
