"""mmreid_gs: QAConv + Graph Sampler person re-identification on MMEngine."""
from ._warnings import silence_foreign_warnings

silence_foreign_warnings()  # before mmcv and mmpretrain are imported

import mmengine  # noqa: E402
from mmengine.utils import digit_version  # noqa: E402

from .version import __version__, version_info  # noqa: E402

MMENGINE_MIN, MMENGINE_MAX = '0.8.0', '1.0.0'
MMCV_MIN, MMCV_MAX = '2.0.0', '2.3.0'
MMPRETRAIN_MIN, MMPRETRAIN_MAX = '1.0.0', '2.0.0'


def _check(name, version, low, high):
    if not digit_version(low) <= digit_version(version) < digit_version(high):
        raise ImportError(
            f'{name}=={version} is used but incompatible with mmreid_gs '
            f'{__version__}: please install {name}>={low},<{high}.')


_check('mmengine', mmengine.__version__, MMENGINE_MIN, MMENGINE_MAX)
try:
    import mmcv
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError('mmreid_gs needs mmcv (mmcv-lite is enough): '
                      '`pip install mmcv-lite`') from err
_check('mmcv', mmcv.__version__, MMCV_MIN, MMCV_MAX)
try:
    import mmpretrain
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError('mmreid_gs needs mmpretrain: '
                      '`pip install mmpretrain`') from err
_check('mmpretrain', mmpretrain.__version__, MMPRETRAIN_MIN, MMPRETRAIN_MAX)

__all__ = ['__version__', 'version_info']
