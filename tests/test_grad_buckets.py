"""The gradient sync's bucket count (moesim.estimate.grad_buckets), as the simulator closes buckets at layer ends."""

import numpy as np

from moesim.des.schedule import DEFAULT_BUCKET_PARAMS as SIM_BUCKET_PARAMS
from moesim.estimate.grad_buckets import DEFAULT_BUCKET_PARAMS, bucket_count


def test_a_bucket_closes_at_the_layer_that_fills_it():
    layers = np.array([[16.0, 16.0, 16.0, 4.0]])
    # 16 layers of 1.5, 0.5 and 0.3 thresholds each: a bucket per layer, per 2 layers, per 4 layers (the 4th
    # closes at the stage's end); 4 layers of 0.3: one bucket, flushed at the end.
    grad = np.array([[16 * 1.5, 16 * 0.5, 16 * 0.3, 4 * 0.3]])
    assert bucket_count(grad, layers, 1.0, overlap=True).tolist() == [[16.0, 8.0, 4.0, 1.0]]


def test_one_bucket_without_overlap_or_gradients():
    grad, layers = np.array([[64.0, 0.0, 5.0]]), np.array([[16.0, 16.0, 0.0]])
    assert bucket_count(grad, layers, 1.0, overlap=False).tolist() == [[1.0, 1.0, 1.0]]
    assert bucket_count(grad, layers, 1.0, overlap=True).tolist() == [[16.0, 1.0, 1.0]]


def test_both_engines_share_the_bucket_size():
    assert SIM_BUCKET_PARAMS == DEFAULT_BUCKET_PARAMS == 40_000_000
