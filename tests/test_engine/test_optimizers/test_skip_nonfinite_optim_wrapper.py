"""A NaN or infinite loss skips the optimisation step and is counted."""
import pytest
import torch
from torch import nn

from mmreid_gs.registry import OPTIM_WRAPPERS
from mmreid_gs.utils import register_all_modules


def _wrapper(type_='SkipNonFiniteOptimWrapper'):
    register_all_modules()
    model = nn.Linear(3, 1)
    optim = OPTIM_WRAPPERS.build(
        dict(type=type_, optimizer=torch.optim.SGD(model.parameters(),
                                                   lr=0.1, momentum=0.9),
             clip_grad=dict(max_norm=512)))
    return model, optim


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_loss_skips_the_step(bad):
    model, optim = _wrapper()
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.ones(4, 3)
    loss = model(x).sum() * bad
    optim.update_params(loss)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)
        assert p.grad is None or not p.grad.abs().sum()
    assert optim.num_skipped_steps == 1
    # The next finite step trains as usual and the count stays.
    optim.update_params(model(x).sum())
    assert not torch.equal(next(model.parameters()), before[0])
    assert optim.num_skipped_steps == 1


def test_skipped_count_survives_state_dict():
    model, optim = _wrapper()
    optim.update_params(model(torch.ones(2, 3)).sum() * float('nan'))
    optim.update_params(model(torch.ones(2, 3)).sum() * float('nan'))
    state = optim.state_dict()
    assert state['num_skipped_steps'] == 2
    _, fresh = _wrapper()
    fresh.load_state_dict(state)
    assert fresh.num_skipped_steps == 2
