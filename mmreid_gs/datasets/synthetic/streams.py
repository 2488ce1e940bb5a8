"""The random streams of the synthetic benchmark.

Every random choice of the generator comes from its own generator,
``random_stream(seed, *keys)``, so that one image, identity or camera can be
(re)generated without drawing the others, and adding a draw to one stream
never shifts another. The keys in use (``dom`` = ``DOMAIN_CODE[domain]``,
``spl`` = ``SPLIT_CODE[split]``)::

    (seed, dom, spl, 0)                  order of the person ids of a split
    (seed, dom, spl, 1, family)          attributes shared by a family
    (seed, dom, spl, 2, i)               what identity i changes, its body
    (seed, dom, spl, 3, i)               where and when identity i walks
    (seed, dom, 4, i)                    which test images become queries
    (seed, dom, spl, 5, i, cam, k)       the k-th image of i on camera cam
    (seed, dom, 8)                       distances between the cameras
    (seed, dom, 9, cam)                  camera style
    (seed, dom, 10, cam)                 camera scene

Changing a key or the order of the draws of a stream changes the images:
bump ``GENERATOR_VERSION`` (``writer.py``) when you do.
"""
import numpy as np

DOMAINS = ('A', 'B', 'C')
DOMAIN_CODE = {'A': 1, 'B': 2, 'C': 3}
SPLIT_CODE = {'train': 1, 'test': 2}


def random_stream(seed: int, *keys) -> np.random.Generator:
    """An independent generator for one ``(seed, keys...)`` stream.

    Args:
        seed (int): Generation seed.
        *keys (int): Keys of the stream (see the module docstring).

    Returns:
        np.random.Generator: Seeded from ``[seed, *keys]``.
    """
    return np.random.default_rng([int(seed)] + [int(k) for k in keys])
