"""Registration of every mmreid_gs module and the default scope."""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every module of mmreid_gs so that it lands in the registries.

    Args:
        init_default_scope (bool): Whether to make ``mmreid_gs`` the default
            scope of MMEngine's registries. When another scope is current,
            a new instance named ``mmreid_gs-<timestamp>`` is created so that
            the current one is not overwritten. Defaults to True.
    """
    import mmreid_gs.datasets  # noqa: F401
    import mmreid_gs.engine  # noqa: F401
    import mmreid_gs.evaluation  # noqa: F401
    import mmreid_gs.models  # noqa: F401
    import mmreid_gs.visualization  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    never_created = current is None or not DefaultScope.check_instance_created(
        'mmreid_gs')
    if never_created:
        DefaultScope.get_instance('mmreid_gs', scope_name='mmreid_gs')
        return
    if current.scope_name != 'mmreid_gs':
        warnings.warn('The current default scope '
                      f'"{current.scope_name}" is not "mmreid_gs"; '
                      '`register_all_modules` will force the current '
                      'default scope to be "mmreid_gs".')
        stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
        DefaultScope.get_instance(f'mmreid_gs-{stamp}',
                                  scope_name='mmreid_gs')
