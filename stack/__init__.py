"""The top floor: the ``memoire`` command, the ``up`` supervisor and the local stack it runs.

``pip install memoire`` installs the SDK alone; the server is its ``server`` extra. Without it the command
says so, rather than failing on the first import.
"""

import importlib.util
import sys

_SERVER = ("msgspec", "litestar", "asyncpg", "arq", "redis")

if missing := [name for name in _SERVER if importlib.util.find_spec(name) is None]:
    sys.exit(
        f"memoire: the server is not installed ({', '.join(missing)} missing): pip install 'memoire[server]'"
    )
