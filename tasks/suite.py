"""MRQA 2019 and EPT's "Others" (WinoGrande, Yelp polarity, SciTail, PAWS-Wiki) as seqio tasks; importing
registers them. Names, formats and metrics: ``tasks.suite_specs``.

Data: TFDS (``mrqa/<config>:1.0.0``, ``winogrande:1.2.0``, ``yelp_polarity_reviews:0.2.0``, ``sci_tail:1.0.0``,
``paws_wiki/labeled_final_tokenized:1.1.0``) by default; each data set's official files instead when its
folder is named (``XPROMPT_MRQA_DIR``, ``XPROMPT_WINOGRANDE_DIR``, ``XPROMPT_SCITAIL_DIR``,
``XPROMPT_YELP_DIR``, ``XPROMPT_PAWS_DIR``, or the arguments below; layouts in ``tasks.official_files``).
"""
from __future__ import annotations

from typing import List, Optional

from tasks import ept_splits
from tasks.glue import register_benchmarks
from tasks.superglue import gin_configurable

BENCHMARKS = ("mrqa", "winogrande", "yelp_polarity", "scitail", "paws_wiki")


@gin_configurable("tasks.suite")
def register_suite(mrqa_dir: Optional[str] = None, winogrande_dir: Optional[str] = None,
                   yelp_dir: Optional[str] = None, scitail_dir: Optional[str] = None, paws_dir: Optional[str] = None,
                   vocab_path: Optional[str] = None, tfds_data_dir: Optional[str] = None,
                   ept_seed: int = ept_splits.DEFAULT_SEED) -> List[str]:
    """(Re-)registers the MRQA and "Others" tasks; returns their names. Each ``*_dir`` names the folder of
    that data set's official files (default: its environment variable; unset: TFDS); ``vocab_path`` as in
    ``register_superglue``; ``ept_seed`` seeds the EPT splits' carving."""
    folders = {"mrqa": mrqa_dir, "winogrande": winogrande_dir, "yelp_polarity": yelp_dir, "scitail": scitail_dir,
               "paws_wiki": paws_dir}
    return register_benchmarks(BENCHMARKS, folders, vocab_path=vocab_path, tfds_data_dir=tfds_data_dir,
                               ept_seed=ept_seed)


register_suite()
