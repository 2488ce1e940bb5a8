"""ClassMemoryLoss against the QAConv 1.x formula written out here: loss,
accuracy, gradients (features and matcher weights), the memory after the
update; the memory under resume (a real Runner) and under DDP (2 gloo
processes)."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import dist_init_method, feature_maps

from mmreid_gs.models.heads import QAConvHead
from mmreid_gs.models.losses import ClassMemoryLoss
from mmreid_gs.registry import MODELS
from mmreid_gs.utils import register_all_modules

C, CH, H, W = 5, 3, 2, 2
# configs/qaconv_cm_demo.py on 8 generated identities, tiny network, a hook
# that records the memory, no validation
TINY_CM = dict(
    model='class_memory', channels=8, train_ids=8, test_ids=4, batch_size=8,
    num_instances=2, augment=(), graph_hook=False,
    hooks=[dict(type='_MemoryProbeHook')], epochs=1, val_interval=10,
    log_interval=None,
    extra='val_dataloader = None\nval_cfg = None\nval_evaluator = None\n')


def _feats(n, seed, requires_grad=False):
    return feature_maps(n, CH, H, W, seed).requires_grad_(requires_grad)


class BilinearMatcher(nn.Module):
    """A differentiable toy matcher: a * <q, g> + b; records its calls."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(2.5))
        self.b = nn.Parameter(torch.tensor(-0.3))
        self.calls = []

    def forward(self, q, g):
        self.calls.append((q.size(0), g.size(0)))
        return self.a * q.flatten(1) @ g.flatten(1).t() + self.b


def reference_loss(scores, labels, valid):
    """The public class-memory loss on [B, C] logits, written per element:
    BCE weighted (1-p)^2 (target) / p^2 (others), masked by the valid
    classes, summed over classes, averaged over the batch."""
    total = 0.
    for b in range(scores.size(0)):
        row = 0.
        for c in range(scores.size(1)):
            s = scores[b, c]
            p = torch.sigmoid(s)
            if c == labels[b]:
                term = -torch.log(p) * (1 - p) ** 2
            else:
                term = -torch.log(1 - p) * p ** 2
            row = row + valid[c] * term
        total = total + row
    return total / scores.size(0)


def test_toy_matcher_formula_gradients_and_update():
    loss_fn = ClassMemoryLoss(C, CH, H, W, mem_batch_size=2)
    assert loss_fn.class_memory.shape == (C, CH, H, W)
    # first batch: empty memory -> zero loss, memory filled afterwards
    matcher = BilinearMatcher()
    x0 = _feats(3, 0)
    loss, acc = loss_fn(x0, torch.tensor([0, 2, 2]), matcher)
    assert loss.item() == 0.
    assert matcher.calls == [(3, 2), (3, 2), (3, 1)]  # blocks of 2 classes
    assert loss_fn.valid_class.tolist() == [1, 0, 1, 0, 0]
    assert torch.equal(loss_fn.class_memory[0], x0[0])
    assert torch.equal(loss_fn.class_memory[2], x0[2])  # last one wins
    assert not loss_fn.class_memory[1].any()
    # second batch against the filled rows
    memory = loss_fn.class_memory.clone()
    valid = loss_fn.valid_class.clone()
    x = _feats(4, 1, requires_grad=True)
    labels = torch.tensor([2, 1, 0, 2])
    ref_matcher = copy.deepcopy(matcher)
    loss, acc = loss_fn(x, labels, matcher)
    x_ref = x.detach().clone().requires_grad_()
    scores = ref_matcher(x_ref, memory)
    ref = reference_loss(scores, labels, valid)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert acc.item() == pytest.approx(
        (scores.argmax(1) == labels).float().mean().item())
    loss.backward()
    ref.backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(matcher.a.grad, ref_matcher.a.grad)
    torch.testing.assert_close(matcher.b.grad, ref_matcher.b.grad)
    # memory after the update: rows 0, 1, 2 replaced (class 2: sample 3)
    expected = memory.clone()
    expected[[0, 1, 2]] = x.detach()[[2, 1, 3]]
    assert torch.equal(loss_fn.class_memory, expected)
    assert loss_fn.valid_class.tolist() == [1, 1, 1, 0, 0]
    assert not loss_fn.class_memory.requires_grad
    # loss_weight scales the loss only
    half = ClassMemoryLoss(C, CH, H, W, loss_weight=0.5)
    half.load_state_dict(loss_fn.state_dict())
    full = copy.deepcopy(loss_fn)
    with torch.no_grad():
        lw, _ = half(x, labels, ref_matcher)
        lf, _ = full(x, labels, ref_matcher)
    assert lw.item() == pytest.approx(lf.item() / 2, rel=1e-6)


def public_qaconv_scores(head, q, g):
    """QAConv 1.x matcher in training mode on one call: maxima of the
    location similarities, BatchNorm over all maxima of the call, fc on
    each half, sum, BatchNorm over the logits of the call."""
    hw = H * W
    s = torch.einsum('qcm,gcn->qgmn', q.flatten(2), g.flatten(2))
    maxima = torch.cat((s.max(dim=3)[0], s.max(dim=2)[0]), dim=-1)
    x = maxima.reshape(-1, 1, hw)
    x = F.batch_norm(x, None, None, head.bn.weight, head.bn.bias, True,
                     0., head.bn.eps)
    x = F.linear(x.reshape(-1, hw), head.fc.weight, head.fc.bias)
    x = x.reshape(-1, 2).sum(dim=1, keepdim=True)
    x = F.batch_norm(x, None, None, head.logit_bn.weight,
                     head.logit_bn.bias, True, 0., head.logit_bn.eps)
    return x.reshape(q.size(0), g.size(0))


def test_qaconv_head_matches_public_formula():
    register_all_modules()
    head = MODELS.build(dict(
        type='QAConvHead', num_features=CH, height=H, width=W,
        loss=dict(type='ClassMemoryLoss', num_classes=C, num_features=CH,
                  height=H, width=W, mem_batch_size=2)))
    with torch.no_grad():  # non-trivial matcher weights
        head.fc.weight.copy_(torch.linspace(0.5, 1.5, H * W)[None])
        head.bn.weight.fill_(1.3)
        head.logit_bn.bias.fill_(0.2)
    head.train()
    head.loss(_feats(C, 2), torch.arange(C))  # fill the memory
    memory = head.loss_module.class_memory.clone()
    ref_head = copy.deepcopy(head)
    x = _feats(4, 3, requires_grad=True)
    labels = torch.tensor([4, 1, 1, 3])
    out = head.loss(x, labels)
    assert set(out) == {'loss', 'acc'}
    x_ref = x.detach().clone().requires_grad_()
    scores = torch.cat([
        public_qaconv_scores(ref_head, x_ref, memory[i:i + 2])
        for i in range(0, C, 2)], dim=1)
    ref = reference_loss(scores, labels, torch.ones(C))
    assert out['loss'].item() == pytest.approx(ref.item(), rel=1e-4)
    assert out['acc'].item() == pytest.approx(
        (scores.argmax(1) == labels).float().mean().item())
    out['loss'].backward()
    ref.backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-6)
    for name in ('fc', 'bn', 'logit_bn'):
        torch.testing.assert_close(
            getattr(head, name).weight.grad,
            getattr(ref_head, name).weight.grad, rtol=1e-4, atol=1e-6)
    assert torch.equal(head.loss_module.class_memory[[4, 1, 3]],
                       x.detach()[[0, 2, 3]])


def test_errors_and_inference_mode():
    loss_fn = ClassMemoryLoss(C, CH, H, W)
    with pytest.raises(ValueError, match='num_classes=5'):
        loss_fn(_feats(2, 0), torch.tensor([0, 7]), BilinearMatcher())
    with pytest.raises(ValueError, match=r'\[B, 3, 2, 2\]'):
        loss_fn(torch.zeros(2, 4, 2, 2), torch.tensor([0, 1]),
                BilinearMatcher())
    with pytest.raises(ValueError, match='num_classes must be a positive'):
        ClassMemoryLoss(0, CH, H, W)
    with torch.inference_mode():
        loss, acc = loss_fn(_feats(2, 0), torch.tensor([0, 3]),
                            BilinearMatcher())
    assert torch.isfinite(loss) and 0 <= acc.item() <= 1
    assert loss_fn.valid_class.tolist() == [1, 0, 0, 1, 0]


class _LossModel(nn.Module):

    def __init__(self):
        super().__init__()
        self.head = QAConvHead(CH, H, W, loss=ClassMemoryLoss(
            C, CH, H, W, mem_batch_size=2))
        self.proj = nn.Conv2d(CH, CH, 1)

    def forward(self, x, labels):
        return self.head.loss(F.normalize(self.proj(x), dim=1), labels)


def _ddp_worker(rank, world_size, init_method, out_dir):
    import torch.distributed as dist

    from mmreid_gs.cli import shutdown_dist
    dist.init_process_group('gloo', init_method=init_method,
                            rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(
            _LossModel(), broadcast_buffers=False)
        optim = torch.optim.SGD(model.parameters(), lr=0.1)
        # rank 0: 3 samples, rank 1: 2 (different sizes); class 2 on both
        batches = [([0, 2, 2], [2, 4]), ([1, 3, 1], [4, 0])]
        for step, per_rank in enumerate(batches):
            labels = torch.tensor(per_rank[rank])
            x = _feats(len(labels), 10 * step + rank)
            with torch.no_grad():  # the features the memory will get
                np.save(osp.join(out_dir, f'x_{step}_{rank}.npy'),
                        F.normalize(model.module.proj(x), dim=1).numpy())
            out = model(x, labels)
            optim.zero_grad()
            out['loss'].backward()
            optim.step()
        state = model.module.head.loss_module.state_dict()
        torch.save(state, osp.join(out_dir, f'memory_{rank}.pth'))
    finally:
        shutdown_dist()


def test_ddp_ranks_hold_the_same_memory(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_ddp_worker, args=(2, dist_init_method(tmp_path), str(tmp_path)),
             nprocs=2)
    m0 = torch.load(osp.join(tmp_path, 'memory_0.pth'))
    m1 = torch.load(osp.join(tmp_path, 'memory_1.pth'))
    assert torch.equal(m0['class_memory'], m1['class_memory'])
    assert m0['valid_class'].tolist() == [1, 1, 1, 1, 1]
    assert torch.equal(m0['valid_class'], m1['valid_class'])

    def x(step, rank, i):
        return torch.from_numpy(
            np.load(osp.join(tmp_path, f'x_{step}_{rank}.npy'))[i])

    # rank order, the last sample of a class wins: step 0 gave class 2 its
    # rank-1 sample; step 1 rank 0 [1, 3, 1], then rank 1 [4, 0]
    expected = {2: x(0, 1, 0), 1: x(1, 0, 2), 3: x(1, 0, 1),
                4: x(1, 1, 0), 0: x(1, 1, 1)}
    for c, feat in expected.items():
        torch.testing.assert_close(m0['class_memory'][c], feat)


# slow (about 18-30 s): a benchmark-marked run (`pytest -m benchmark`)
# keeps the CPU suite under its 10-minute limit
@pytest.mark.benchmark
def test_memory_saved_and_restored_by_resume(make_tiny_config, tmp_path):
    """A real Runner: the class memory is in the checkpoint and a resumed
    run starts its next epoch with it."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from mmreid_gs.registry import HOOKS
    seen = {}

    @HOOKS.register_module(force=True)
    class _MemoryProbeHook(Hook):

        def before_train_epoch(self, runner):
            loss = runner.model.head.loss_module
            seen[runner.epoch] = (loss.class_memory.clone(),
                                  loss.valid_class.clone())

    from mmengine.config import Config
    cfg = Config.fromfile(make_tiny_config(tmp_path, **TINY_CM))
    cfg.work_dir = str(tmp_path / 'work')
    Runner.from_cfg(copy.deepcopy(cfg)).train()
    ckpt = torch.load(osp.join(cfg.work_dir, 'epoch_1.pth'),
                      weights_only=False)
    memory = ckpt['state_dict']['head.loss_module.class_memory']
    valid = ckpt['state_dict']['head.loss_module.valid_class']
    assert memory.shape == (8, 16, 4, 2) and valid.sum() > 0
    cfg.train_cfg.max_epochs = 2
    cfg.resume = True
    cfg.experiment_name = 'resumed'
    Runner.from_cfg(cfg).train()
    assert torch.equal(seen[1][0], memory)
    assert torch.equal(seen[1][1], valid)
    # a memory smaller than the training set's classes: a clear error
    small = copy.deepcopy(cfg)
    small.model.head.loss.num_classes = 4
    small.work_dir = str(tmp_path / 'small')
    small.resume = False
    small.experiment_name = 'small'
    with pytest.raises(ValueError, match='num_classes=4'):
        Runner.from_cfg(small).train()
