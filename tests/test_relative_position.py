"""T5's relative-position buckets against an independent NumPy transcription of Hugging Face's formula."""
import numpy as np
import pytest
from numpy_t5 import _bucket as reference_bucket

from xprompt_jax.models.t5 import relative_position_bucket


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (4, 8), (64, 256)])
def test_buckets_match_reference(bidirectional, num_buckets, max_distance):
    rel = np.arange(-1100, 1101)[None, :]
    ours = relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    ref = reference_bucket(rel.copy(), bidirectional, num_buckets, max_distance)
    np.testing.assert_array_equal(ours, ref)


def test_bucket_semantics():
    # Bidirectional: keys after the query use the upper half of the table; far offsets share a bucket.
    rel = np.array([-3, 0, 3, 1000, -1000])
    b = relative_position_bucket(rel, True, 32, 128)
    assert b[1] == 0 and b[0] == 3 and b[2] == 16 + 3
    assert b[3] == 31 and b[4] == 15
    # Causal: every key after the query falls in bucket 0.
    c = relative_position_bucket(np.array([5, 1, 0, -2]), False, 32, 128)
    assert list(c) == [0, 0, 0, 2]
