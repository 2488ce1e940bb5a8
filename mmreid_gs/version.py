__version__ = '0.1.0'


def parse_version_info(version_str):
    """Parse a version string into a tuple of ints (and a suffix)."""
    info = []
    for part in version_str.split('.'):
        if part.isdigit():
            info.append(int(part))
        else:
            info.append(part)
    return tuple(info)


version_info = parse_version_info(__version__)
