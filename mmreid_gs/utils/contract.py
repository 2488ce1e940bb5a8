"""The matcher contract of re-ID models.

Every re-ID model in mmreid_gs offers

- ``extract_feat(inputs [B, 3, H, W]) -> feats`` (a feature map [B, c, h, w]
  for QAConv, an embedding [B, d] for a global model), and
- ``match(query_feats, gallery_feats) -> Tensor [q, g]``: similarities,
  higher = more similar, computed blockwise with bounded memory.

:class:`~mmreid_gs.engine.hooks.GraphSamplerHook`, the test loops and
:mod:`mmreid_gs.apis` call these two on the (unwrapped) model and nothing
else of it, so any head plugs in by providing them. A model may also offer

- ``match_pairs(query [n, ...], gallery [n, m, ...]) -> [n, m]``: each
  query against its own gallery list (the batched second stage of the
  two-stage class graph and the shortlisted test), optionally in the index
  form ``match_pairs(query [n, ...], gallery [G, ...], index=[n, m])``
  where list i is ``gallery[index[i]]``, gathered by the scorer
  (:func:`takes_index`).
"""
import inspect

REID_MODEL_METHODS = ('extract_feat', 'match')


def check_reid_model(model, user: str) -> None:
    """Raise a TypeError naming what ``model`` lacks of the contract.

    Args:
        model: The (unwrapped) model.
        user (str): Who needs it, for the message (e.g. 'GraphSamplerHook').
    """
    missing = [
        name for name in REID_MODEL_METHODS
        if not callable(getattr(model, name, None))
    ]
    if missing:
        raise TypeError(
            f'{user} needs a re-ID model with extract_feat(inputs) and '
            'match(query_feats, gallery_feats) -> [q, g] similarities; '
            f'{type(model).__name__} lacks {", ".join(missing)} (see '
            'docs/architecture.md).')


def takes_index(pair_matcher) -> bool:
    """Whether a pair scorer accepts ``index=`` (the index form of
    ``match_pairs`` above, e.g. :meth:`QAConvHead.match_pairs`): the caller
    then hands it the gallery whole and each row's list as indices, and no
    [n, m, ...] copy of the lists is made."""
    try:
        params = inspect.signature(pair_matcher).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return 'index' in params
