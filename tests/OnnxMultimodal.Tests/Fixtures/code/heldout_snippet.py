"""Small helpers for reading settings files.

Written for the perplexity test of the trained code model: it was never
part of the model's training data.
"""

import os


class SettingsError(Exception):
    """Raised when a settings file cannot be read."""


def parse_line(line):
    """Return a (key, value) pair for one line, or None for a comment."""
    line = line.strip()
    if not line or line.startswith('#'):
        return None
    if '=' not in line:
        raise SettingsError('missing "=" in %r' % line)
    key, value = line.split('=', 1)
    return key.strip(), value.strip()


def read_settings(path, defaults=None):
    """Read a settings file and return a dictionary of its values."""
    result = dict(defaults or {})
    if not os.path.exists(path):
        return result
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            try:
                pair = parse_line(line)
            except SettingsError as e:
                raise SettingsError('%s:%d: %s' % (path, number, e)) from None
            if pair is not None:
                key, value = pair
                result[key] = value
    return result


def write_settings(path, values):
    """Write the values back, one per line, sorted by key."""
    with open(path, 'w', encoding='utf-8') as f:
        for key in sorted(values):
            f.write('%s = %s\n' % (key, values[key]))
