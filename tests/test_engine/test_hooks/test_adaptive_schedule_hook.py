"""AdaptiveScheduleHook on a real MMEngine Runner.

The toy model has one scalar weight ``w`` and the loss ``w ** 2``; plain SGD
(no momentum, no weight decay) makes ``w <- w * (1 - 2 * lr)``, so the loss of
every iteration is known in closed form and the test replays the public
QAConv 2.1 rule on it in pure Python to get the expected decay and stop
epochs.
"""
import math
import uuid

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmreid_gs.engine.checkpoint import allow_mmengine_checkpoint_types
from mmreid_gs.engine.hooks.adaptive_schedule_hook import AdaptiveScheduleHook
from mmreid_gs.registry import HOOKS

W0 = 1.0
LR = 0.02
ITERS_PER_EPOCH = 2
MAX_EPOCHS = 10

# torch>=2.6 loads with weights_only=True; MMEngine checkpoints need this
allow_mmengine_checkpoint_types()


class ToyDataset(Dataset):

    def __len__(self):
        return ITERS_PER_EPOCH

    def __getitem__(self, idx):
        return dict(inputs=torch.zeros(1))


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float64))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        loss = self.w**2
        if mode == 'loss':
            return dict(loss=loss)
        return loss


class LrRecorder(Hook):
    """Records the lr used during each epoch and the epochs run."""

    priority = 'LOWEST'

    def __init__(self):
        self.lrs = {}

    def before_train_epoch(self, runner):
        self.lrs[runner.epoch + 1] = runner.optim_wrapper.get_lr()['lr'][0]


def expected_schedule(step_factor=0.7, stop_factor=1.5, lr_decay=0.1):
    """Replay the public rule on the closed-form losses.

    Returns:
        tuple: decay epoch, final epoch and the lr of every epoch run.
    """
    w, lr, base, decay, final = W0, LR, None, None, MAX_EPOCHS
    lrs = {}
    for epoch in range(1, MAX_EPOCHS + 1):
        lrs[epoch] = lr
        losses = []
        for _ in range(ITERS_PER_EPOCH):
            losses.append(w * w)
            w = w * (1 - 2 * lr)
        loss = sum(losses) / len(losses)
        if epoch == 2:
            base = loss
        if decay is None and base is not None and loss < base * step_factor:
            decay = epoch
            final = min(MAX_EPOCHS, epoch + epoch // 2)
            lr *= lr_decay
        if epoch == final:
            break
    return decay, final, lrs


def make_runner(work_dir, hook, recorder, **kwargs):
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'adaptive_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=1,
            num_workers=0),
        train_cfg=dict(by_epoch=True, max_epochs=MAX_EPOCHS),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=LR)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[hook, recorder],
        default_scope='mmengine',
        **kwargs)


def test_expected_schedule_is_non_trivial():
    decay, final, _ = expected_schedule()
    # base 0.9216-ish drop per iteration: decay at epoch 5, stop at 7
    assert (decay, final) == (5, 7)


def test_registered_and_validated():
    hook = HOOKS.build(dict(type='AdaptiveScheduleHook', step_factor=0.5))
    assert isinstance(hook, AdaptiveScheduleHook)
    assert hook.step_factor == 0.5 and hook.stop_factor == 1.5
    with pytest.raises(ValueError, match='stop_factor'):
        AdaptiveScheduleHook(stop_factor=0.5)
    with pytest.raises(ValueError, match='integer'):
        AdaptiveScheduleHook(step_factor=2.5)


def test_decay_and_stop_then_resume(tmp_path):
    decay, final, exp_lrs = expected_schedule()

    hook, recorder = AdaptiveScheduleHook(), LrRecorder()
    runner = make_runner(tmp_path / 'full', hook, recorder)
    runner.train()
    assert runner.train_loop.epoch == final
    assert hook.decay_epoch == decay and hook.final_epoch == final
    assert recorder.lrs.keys() == exp_lrs.keys()
    for epoch, lr in exp_lrs.items():
        assert recorder.lrs[epoch] == pytest.approx(lr, rel=1e-12), epoch
    # the loop's end follows the stop, so the last checkpoint exists
    assert (tmp_path / 'full' / f'epoch_{final}.pth').is_file()
    assert not (tmp_path / 'full' / f'epoch_{final + 1}.pth').exists()
    ckpt = torch.load(tmp_path / 'full' / f'epoch_{decay}.pth')
    assert ckpt['adaptive_schedule']['decay_epoch'] == decay
    assert ckpt['adaptive_schedule']['final_epoch'] == final
    assert ckpt['adaptive_schedule']['base_loss'] == pytest.approx(
        hook.base_loss)

    # resume after the base epoch but before the decay: the base loss must
    # come back from the checkpoint for the decay to happen at all
    for resume_epoch in (3, decay):
        hook2, recorder2 = AdaptiveScheduleHook(), LrRecorder()
        runner2 = make_runner(
            tmp_path / f'resume{resume_epoch}',
            hook2,
            recorder2,
            resume=True,
            load_from=str(tmp_path / 'full' / f'epoch_{resume_epoch}.pth'))
        runner2.train()
        assert hook2.base_loss == pytest.approx(hook.base_loss, rel=1e-12)
        assert (hook2.decay_epoch, hook2.final_epoch) == (decay, final)
        assert runner2.train_loop.epoch == final
        assert sorted(recorder2.lrs) == list(range(resume_epoch + 1,
                                                   final + 1))
        for epoch, lr in recorder2.lrs.items():
            assert lr == pytest.approx(exp_lrs[epoch], rel=1e-12), epoch


def test_load_from_without_resume_starts_fresh(tmp_path):
    hook, recorder = AdaptiveScheduleHook(), LrRecorder()
    runner = make_runner(tmp_path / 'a', hook, recorder)
    runner.train()
    # fine-tuning from the converged weights: w is tiny, so the losses keep
    # shrinking geometrically from epoch 1; the schedule restarts
    hook2 = AdaptiveScheduleHook(step_factor=3)  # fixed decay after epoch 3
    recorder2 = LrRecorder()
    runner2 = make_runner(
        tmp_path / 'b',
        hook2,
        recorder2,
        load_from=str(tmp_path / 'a' / 'epoch_7.pth'))
    runner2.train()
    assert hook2.decay_epoch == 3 and hook2.final_epoch is None
    assert runner2.train_loop.epoch == MAX_EPOCHS
    assert recorder2.lrs[3] == pytest.approx(LR)
    assert recorder2.lrs[4] == pytest.approx(LR * 0.1)
    assert math.isclose(recorder2.lrs[MAX_EPOCHS], LR * 0.1)


def test_epoch_loss_is_averaged_over_ranks(monkeypatch):
    """The (sum, count) pair goes through ``all_reduce``; a second rank with
    losses [4, 6] (sum 10, count 2) turns the local mean 1.5 into 13 / 4."""
    import mmreid_gs.engine.hooks.adaptive_schedule_hook as module

    calls = []

    def fake_all_reduce(data, op='sum'):
        calls.append(op)
        data += torch.tensor([10.0, 2.0], dtype=data.dtype)

    monkeypatch.setattr(module, 'all_reduce', fake_all_reduce)
    hook = AdaptiveScheduleHook()
    hook.before_train_epoch(None)
    for value in (1.0, 2.0, float('nan')):  # the NaN iteration is skipped
        hook.after_train_iter(None, 0, outputs=dict(loss=torch.tensor(value)))
    assert hook._epoch_loss() == pytest.approx(13 / 4)
    assert calls == ['sum']
