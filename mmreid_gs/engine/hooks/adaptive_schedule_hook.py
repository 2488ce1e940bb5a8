"""Adaptive learning-rate decay and early stop of QAConv 2.1."""
import math
from typing import Optional, Sequence

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.runner import IterBasedTrainLoop

from mmreid_gs.registry import HOOKS

_STATE_KEY = 'adaptive_schedule'


@HOOKS.register_module()
class AdaptiveScheduleHook(Hook):
    """Decay the learning rate once the loss has dropped enough, then stop.

    The adaptive epoch and learning-rate schedule of the public QAConv 2.1
    code: the mean training loss of epoch ``base_epoch`` (the second epoch,
    the first one being too unstable) is the *base loss*. At the end of every
    later epoch ``e`` (1-based) whose mean loss is below
    ``step_factor * base_loss``, the learning rate of every parameter group
    is multiplied by ``lr_decay`` (once), and training stops after epoch
    ``min(max_epochs, floor(stop_factor * e))`` (public code:
    ``e + e // 2``). With ``step_factor >= 1`` the schedule is fixed instead:
    the decay happens after epoch ``int(step_factor)`` and training runs to
    ``max_epochs``.

    The stop shortens the train loop's ``max_epochs``, so that the last-epoch
    checkpoint (``CheckpointHook(save_last=True)``), the last-epoch validation
    and the ETA follow the new end, and also sets
    ``runner.train_loop.stop_training``. The lr is changed in place in the
    optimizer (and ``initial_lr`` when a parameter scheduler stored one), so
    use it with a constant lr or with chainable schedulers (warm-up,
    ``MultiStepLR``), not with closed-form ones that overwrite the lr.

    Under distributed training the epoch loss is averaged over all ranks, so
    every rank takes the same decision. The state (base loss, decay and final
    epochs) is stored in checkpoints under ``checkpoint['adaptive_schedule']``
    and restored when training is resumed (``resume=True``); loading weights
    with ``load_from`` alone starts a fresh schedule.

    Example:
        >>> custom_hooks = [
        ...     dict(type='AdaptiveScheduleHook', step_factor=0.7,
        ...          stop_factor=1.5, lr_decay=0.1)
        ... ]
        >>> train_cfg = dict(by_epoch=True, max_epochs=60)  # upper bound

    Args:
        step_factor (float): Relative loss drop that triggers the lr decay
            (dynamic schedule) when below 1, or the 1-based epoch after which
            the lr is decayed (fixed schedule) when >= 1. Defaults to 0.7.
        stop_factor (float): Training stops after epoch
            ``floor(stop_factor * decay_epoch)`` (dynamic schedule only).
            Must be >= 1. Defaults to 1.5.
        lr_decay (float): Factor multiplying the lr at the decay.
            Defaults to 0.1.
        loss_key (str): Key of the training loss in the outputs of
            ``train_step`` (the parsed log variables; ``'loss'`` is the
            total loss). Falls back to the message hub scalar
            ``train/<loss_key>``. Defaults to 'loss'.
        base_epoch (int): 1-based epoch whose mean loss is the base loss.
            Defaults to 2 (as the public code).
    """

    priority = 'NORMAL'  # before ParamSchedulerHook and CheckpointHook

    def __init__(self,
                 step_factor: float = 0.7,
                 stop_factor: float = 1.5,
                 lr_decay: float = 0.1,
                 loss_key: str = 'loss',
                 base_epoch: int = 2) -> None:
        if step_factor <= 0:
            raise ValueError(
                f'step_factor must be positive, got {step_factor}')
        if step_factor >= 1 and float(step_factor) != int(step_factor):
            raise ValueError('step_factor >= 1 means a fixed decay epoch and '
                             f'must be an integer, got {step_factor}')
        if stop_factor < 1:
            raise ValueError(f'stop_factor must be >= 1, got {stop_factor}')
        if lr_decay <= 0:
            raise ValueError(f'lr_decay must be positive, got {lr_decay}')
        if int(base_epoch) != base_epoch or base_epoch < 1:
            raise ValueError(
                f'base_epoch must be an integer >= 1, got {base_epoch}')
        self.step_factor = float(step_factor)
        self.stop_factor = float(stop_factor)
        self.lr_decay = float(lr_decay)
        self.loss_key = loss_key
        self.base_epoch = int(base_epoch)

        self.base_loss: Optional[float] = None
        self.decay_epoch: Optional[int] = None
        self.final_epoch: Optional[int] = None
        self._pending_state: Optional[dict] = None
        self._loss_sum: Optional[torch.Tensor] = None
        self._loss_count: Optional[torch.Tensor] = None

    @property
    def fixed_schedule(self) -> bool:
        """bool: Whether the decay epoch is fixed (``step_factor >= 1``)."""
        return self.step_factor >= 1

    # ------------------------------------------------------------ state --
    def state_dict(self) -> dict:
        """Return the schedule state (plain Python types only).

        Returns:
            dict: ``base_loss``, ``decay_epoch``, ``final_epoch`` and the
            hook's settings.
        """
        return dict(
            base_loss=self.base_loss,
            decay_epoch=self.decay_epoch,
            final_epoch=self.final_epoch,
            step_factor=self.step_factor,
            stop_factor=self.stop_factor,
            lr_decay=self.lr_decay,
            base_epoch=self.base_epoch)

    def load_state_dict(self, state: dict) -> None:
        """Restore the state saved by :meth:`state_dict`.

        Args:
            state (dict): The saved state.
        """
        base_loss = state.get('base_loss')
        self.base_loss = None if base_loss is None else float(base_loss)
        decay_epoch = state.get('decay_epoch')
        self.decay_epoch = None if decay_epoch is None else int(decay_epoch)
        final_epoch = state.get('final_epoch')
        self.final_epoch = None if final_epoch is None else int(final_epoch)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the schedule state in the checkpoint."""
        checkpoint[_STATE_KEY] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved state; it is applied in ``before_train`` when the
        run turns out to be a resumed one (``load_from`` alone does not
        restore a schedule)."""
        self._pending_state = checkpoint.get(_STATE_KEY)

    # ------------------------------------------------------------ hooks --
    def before_train(self, runner) -> None:
        """Check the loop type and restore the state of a resumed run."""
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) or not hasattr(
                loop, 'stop_training') or not hasattr(loop, 'max_epochs'):
            raise TypeError('AdaptiveScheduleHook needs an epoch-based train '
                            'loop (train_cfg=dict(by_epoch=True, ...)), got '
                            f'{type(loop).__name__}')
        resumed = loop.epoch > 0
        if resumed:
            if self._pending_state is None:
                runner.logger.warning(
                    'AdaptiveScheduleHook: the resumed checkpoint holds no '
                    f'"{_STATE_KEY}" state; the schedule restarts from '
                    f'epoch {loop.epoch + 1} (no base loss is recorded if '
                    f'epoch {self.base_epoch} is already past).')
            else:
                self.load_state_dict(self._pending_state)
                runner.logger.info(
                    'AdaptiveScheduleHook: resumed state '
                    f'{self.state_dict()}')
        self._pending_state = None
        if self.final_epoch is not None:
            self._shorten_training(runner)

    def before_train_epoch(self, runner) -> None:
        """Reset the loss accumulators."""
        self._loss_sum = None
        self._loss_count = None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Accumulate the training loss of the iteration (no host sync)."""
        value = None
        if isinstance(outputs, dict):
            value = outputs.get(self.loss_key)
        if value is None:
            key = f'train/{self.loss_key}'
            if key not in runner.message_hub.log_scalars:
                found = sorted(outputs) if isinstance(outputs, dict) else []
                raise KeyError(
                    f'AdaptiveScheduleHook: loss "{self.loss_key}" is neither '
                    f'in the train_step outputs (keys: {found}) nor in the '
                    f'message hub ("{key}"); set loss_key')
            value = runner.message_hub.get_scalar(key).current()
        if isinstance(value, torch.Tensor):
            value = value.detach().float().mean()
        else:
            value = torch.tensor(float(value))
        finite = torch.isfinite(value)
        value = torch.where(finite, value, torch.zeros_like(value))
        if self._loss_sum is None:
            self._loss_sum = torch.zeros_like(value)
            self._loss_count = torch.zeros_like(value)
        self._loss_sum = self._loss_sum + value.to(self._loss_sum.device)
        self._loss_count = self._loss_count + finite.to(
            self._loss_count.device).float()

    def _epoch_loss(self) -> Optional[float]:
        """Mean loss of the epoch over all iterations of all ranks."""
        if self._loss_sum is None:
            stats = torch.zeros(2)
        else:
            stats = torch.stack([self._loss_sum, self._loss_count])
        all_reduce(stats, op='sum')  # no-op without distributed training
        total, count = stats.tolist()
        return total / count if count > 0 else None

    def after_train_epoch(self, runner) -> None:
        """Record the base loss, decay the lr and stop when it is time."""
        epoch = runner.epoch + 1  # 1-based; the loop increments afterwards
        loss = self._epoch_loss()
        if loss is None:
            runner.logger.warning(
                f'AdaptiveScheduleHook: no finite "{self.loss_key}" value in '
                f'epoch {epoch}; no schedule decision.')
        else:
            if epoch == self.base_epoch:
                self.base_loss = loss
                runner.logger.info(
                    f'AdaptiveScheduleHook: base loss {loss:.4f} (epoch '
                    f'{epoch}); the lr decays once the epoch loss is below '
                    f'{self.step_factor * loss:.4f}.')
            if self.decay_epoch is None and self._should_decay(epoch, loss):
                self.decay_epoch = epoch
                if not self.fixed_schedule:
                    target = max(epoch, math.floor(self.stop_factor * epoch))
                    self.final_epoch = min(runner.max_epochs, target)
                self._decay_lr(runner)
                runner.logger.info(
                    f'AdaptiveScheduleHook: epoch {epoch} loss {loss:.4f} '
                    f'(base {self.base_loss}); lr multiplied by '
                    f'{self.lr_decay}; final epoch: '
                    f'{self.final_epoch or runner.max_epochs}.')
                if self.final_epoch is not None:
                    self._shorten_training(runner)
        if self.final_epoch is not None and epoch >= self.final_epoch:
            runner.train_loop.stop_training = True
            runner.logger.info('AdaptiveScheduleHook: the learning converges '
                               f'at epoch {epoch}; training stops.')

    # ---------------------------------------------------------- helpers --
    def _should_decay(self, epoch: int, loss: float) -> bool:
        if self.fixed_schedule:
            return epoch == int(self.step_factor)
        return self.base_loss is not None and loss < (self.base_loss *
                                                      self.step_factor)

    def _decay_lr(self, runner) -> None:
        optim_wrapper = runner.optim_wrapper
        if isinstance(optim_wrapper, OptimWrapperDict):
            wrappers: Sequence = list(optim_wrapper.values())
        else:
            wrappers = [optim_wrapper]
        for wrapper in wrappers:
            for group in wrapper.optimizer.param_groups:
                group['lr'] *= self.lr_decay
                if 'initial_lr' in group:
                    group['initial_lr'] *= self.lr_decay

    def _shorten_training(self, runner) -> None:
        """Make ``final_epoch`` the loop's last epoch."""
        loop = runner.train_loop
        if self.final_epoch >= loop.max_epochs:
            return
        if hasattr(loop, '_max_epochs'):
            loop._max_epochs = self.final_epoch
            if hasattr(loop, '_max_iters') and hasattr(loop, 'dataloader'):
                loop._max_iters = self.final_epoch * len(loop.dataloader)
        runner.logger.info(f'AdaptiveScheduleHook: max_epochs set to '
                           f'{self.final_epoch}.')
