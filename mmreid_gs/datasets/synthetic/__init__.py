"""SyntheticReID: a generated person re-identification benchmark.

The generator draws person-like images whose identity lies in body
proportions, skin/hair colour, upper and lower clothing (type, colour,
pattern) and accessories (hat, shoulder bag, backpack, handbag). Identities
come in *families* of look-alikes that share most attributes and differ in
one or two, so that nearest classes are genuinely hard. Each image varies in
pose (stride, arm swing, position, scale, shear, mirror), view (front/back,
depending on the walking direction and the camera), and is sometimes
partially occluded. Each camera has its own scene and style (background,
colour temperature, gain, gamma, saturation, resolution, blur, noise, JPEG
quality, contrast). Domain ``'A'`` uses indoor scenes and mild styles,
domain ``'B'`` outdoor daylight scenes, strong colour casts, low saturation,
low resolution and blur, domain ``'C'`` outdoor night and overcast scenes,
strong blue or green casts, high contrast, noise and smaller persons. The
identity distribution is shared; the people of the domains differ.

Modules, in the order the data flows:

- ``streams``: one independent random stream per key (the keys are listed
  there); the images stay the same as long as the streams do.
- ``identities``: the attributes of every identity, family by family.
- ``styles``: the scene and photometric style of every camera.
- ``renderer``: one person drawn, posed and composed into a camera image.
- ``writer``: when and where each person is seen, and the tree written
  atomically under a lock (:func:`generate_synthetic_reid`).
- ``synthetic_reid``: :class:`SyntheticReID`, the dataset that generates
  its tree on first use and reads it as Market-1501.
"""
from .streams import DOMAINS
from .synthetic_reid import SyntheticReID
from .writer import (GENERATOR_NAME, GENERATOR_VERSION,
                     generate_synthetic_reid)

__all__ = [
    'DOMAINS', 'GENERATOR_NAME', 'GENERATOR_VERSION', 'SyntheticReID',
    'generate_synthetic_reid'
]
