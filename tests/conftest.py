"""Fixtures every test folder shares (the helpers they build on are in
``tests/helpers.py``, importable as ``helpers``)."""
import pytest
from helpers import REPO, write_tiny_config


@pytest.fixture(scope='session')
def repo():
    """The repository root."""
    return REPO


@pytest.fixture(scope='session')
def make_tiny_config(tmp_path_factory):
    """Write the tiny generated-benchmark runner config.

    Returns a function ``make(folder=None, name='tiny.py', **options) ->
    path``: ``folder`` None is a new temporary folder; ``options`` are those
    of :func:`helpers.write_tiny_config` (model kind, identities, test sets,
    augmentations, batches, hooks, epochs, ...). The data is generated into
    ``<folder>/data`` on first use.
    """

    def make(folder=None, name='tiny.py', **options):
        if folder is None:
            folder = tmp_path_factory.mktemp('tiny')
        return write_tiny_config(folder, name, **options)

    return make
