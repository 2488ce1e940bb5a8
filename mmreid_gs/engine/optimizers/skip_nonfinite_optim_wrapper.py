"""Optimizer wrappers that skip a step whose loss is NaN or infinite."""
import logging
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce, is_distributed
from mmengine.logging import MessageHub, print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmreid_gs.registry import OPTIM_WRAPPERS


class _SkipNonFiniteMixin:
    """Skip the update when the loss is not finite, as the public QAConv
    code does, and count the skipped steps.

    The decision is all-reduced, so under DDP every rank skips together and
    none waits for gradients that never come. The count is logged as
    ``skipped_steps`` and kept in the optimizer wrapper's state dict.
    """

    num_skipped_steps = 0

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        finite = torch.isfinite(loss.detach()).all().float().reshape(1)
        if is_distributed():
            all_reduce(finite, op='min')
        if finite.item() > 0:
            super().update_params(loss, step_kwargs, zero_kwargs)
        else:
            self.zero_grad(**(zero_kwargs or {}))
            self.num_skipped_steps += 1
            print_log(
                f'Non-finite loss ({loss.detach().float().mean().item()}) '
                'on this or another rank: the step is skipped '
                f'({self.num_skipped_steps} so far).',
                logger='current',
                level=logging.WARNING)
        MessageHub.get_current_instance().update_scalar(
            'train/skipped_steps', self.num_skipped_steps)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state['num_skipped_steps'] = self.num_skipped_steps
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        self.num_skipped_steps = int(state_dict.pop('num_skipped_steps', 0))
        super().load_state_dict(state_dict)


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(_SkipNonFiniteMixin, OptimWrapper):
    """:class:`OptimWrapper` that skips steps with a non-finite loss."""


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteAmpOptimWrapper(_SkipNonFiniteMixin, AmpOptimWrapper):
    """:class:`AmpOptimWrapper` that skips steps with a non-finite loss."""
