"""The cost model behind 'auto' (conv3d_cpu/_core/algorithms.py)."""
import itertools

import pytest

from conv3d_cpu._core import algorithms

LAYERS = [  # (C, O, spatial)
    (512, 512, (2, 7, 7)), (320, 320, (3, 3, 3)), (256, 256, (6, 6, 6)), (128, 128, (8, 28, 28)),
    (32, 32, (96, 96, 96)), (1, 32, (64, 64, 64)), (64, 64, (16, 16, 16)),
]


@pytest.mark.parametrize("layer", LAYERS)
def test_choice_does_not_depend_on_the_batch(layer):
    # so that m(x)[1:] == m(x[1:]) bitwise, as in PyTorch
    c, o, sp = layer
    choices = {algorithms.choose("auto", (n, c) + sp, (o, c, 3, 3, 3), (1, 1, 1), (1, 1, 1), 1,
                                 sp) for n in (1, 2, 3, 8, 64)}
    assert len(choices) == 1, choices


def test_few_tiles_with_many_channels_avoid_the_largest_transform():
    # U of F(4^3) for 512 -> 512 is 216 MiB, read on every call for 4 tiles: F(2^3) or direct.
    m = algorithms.choose("auto", (1, 512, 2, 7, 7), (512, 512, 3, 3, 3), (1, 1, 1), (1, 1, 1),
                          1, (2, 7, 7))
    assert m != (4, 4, 4)
    assert algorithms.choose("auto", (1, 320, 3, 3, 3), (320, 320, 3, 3, 3), (1, 1, 1),
                             (1, 1, 1), 1, (3, 3, 3)) is None
    # while large volumes keep F(4^3)
    assert algorithms.choose("auto", (1, 32, 96, 96, 96), (32, 32, 3, 3, 3), (1, 1, 1),
                             (1, 1, 1), 1, (96, 96, 96)) == (4, 4, 4)


def test_costs_grow_with_the_work():
    for m, (a, b) in itertools.product((None, 2, 4), [((8, 8, 8), (16, 16, 16))]):
        small = algorithms.estimate_seconds(m, 1, 32, 32, 1, a, (3, 3, 3))
        large = algorithms.estimate_seconds(m, 1, 32, 32, 1, b, (3, 3, 3))
        assert 0 < small < large
