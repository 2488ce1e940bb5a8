"""Fixtures of the API tests: the tiny QAConv config and model."""
import pytest
from apis_helpers import write_config


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp('tiny_config'))


@pytest.fixture(scope='module')
def tiny_model(tiny_config):
    """The tiny model with non-trivial BatchNorm statistics (so that the
    folded QAConv affine is not the identity)."""
    import torch
    from mmreid_gs.apis import init_model
    model = init_model(tiny_config, None)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bn in (model.head.bn, model.head.logit_bn):
            bn.running_mean.uniform_(-0.3, 0.3, generator=gen)
            bn.running_var.uniform_(0.5, 2.0, generator=gen)
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.uniform_(-0.5, 0.5, generator=gen)
        model.head.fc.weight.uniform_(0.05, 0.2, generator=gen)
        model.head.fc.bias.fill_(0.1)
    return model
