"""The autocast queries of utils/thread_state.py on the API of torch
2.0-2.3 (``torch.is_autocast_enabled()`` without a device, CPU / GPU
specific getters, no ``torch.get_autocast_dtype``), simulated by
monkeypatching the installed torch (issue 31, item 3)."""
import pytest
import torch

from mmreid_gs.models.heads.pair_head import pair_compute_dtype
from mmreid_gs.utils import thread_state
from mmreid_gs.utils.thread_state import (autocast_dtype, autocast_enabled,
                                          capture_thread_state,
                                          run_in_workers)


class _OldTorch:
    """The torch module as utils/thread_state.py would see torch 2.0-2.3:
    ``is_autocast_enabled()`` takes no device (CUDA), the CPU and GPU
    getters, no ``get_autocast_dtype``; everything else is the real torch.
    """

    def __getattr__(self, name):
        if name == 'get_autocast_dtype':
            raise AttributeError(
                "module 'torch' has no attribute 'get_autocast_dtype'")
        return getattr(torch, name)

    @staticmethod
    def is_autocast_enabled():
        return torch.is_autocast_enabled('cuda')

    @staticmethod
    def is_autocast_cpu_enabled():
        return torch.is_autocast_enabled('cpu')

    @staticmethod
    def get_autocast_cpu_dtype():
        return torch.get_autocast_dtype('cpu')

    @staticmethod
    def get_autocast_gpu_dtype():
        return torch.get_autocast_dtype('cuda')


@pytest.fixture
def old_torch_api(monkeypatch):
    """utils/thread_state.py (which pair_head.py calls) on torch 2.0-2.3's
    autocast API."""
    monkeypatch.setattr(thread_state, 'torch', _OldTorch())


@pytest.mark.parametrize('old', [False, True])
def test_autocast_queries(old, request):
    if old:
        request.getfixturevalue('old_torch_api')
    feats = torch.zeros(2, 3, dtype=torch.float64)
    assert not autocast_enabled('cpu')
    assert pair_compute_dtype(feats, cpu_autocast=True) == torch.float64
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert autocast_enabled('cpu') and not autocast_enabled('cuda')
        assert autocast_dtype('cpu') == torch.bfloat16
        assert autocast_dtype('cuda') == torch.float16
        assert pair_compute_dtype(feats, cpu_autocast=True) == \
            torch.bfloat16
        assert pair_compute_dtype(feats) == torch.float64
        seen = []

        def work(_):
            seen.append((autocast_enabled('cpu'), autocast_dtype('cpu')))

        # the modes reach worker threads with the old API too
        with torch.inference_mode():
            enter = capture_thread_state()
            run_in_workers(work, [0, 1])
    assert seen == [(True, torch.bfloat16)] * 2
    with enter():
        assert torch.is_inference_mode_enabled()
    if old:
        with pytest.raises(ValueError, match='torch >= 2.4'):
            autocast_enabled('xpu')
