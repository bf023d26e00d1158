"""Where Sparta's programs are, as `scripts/sparta` finds them: run from
the source tree this package belongs to (the launcher in scripts/, the
daemons in $SPARTA_BIN, else <repo>/build/bin), or installed by `cmake
--install` (this package in <prefix>/lib/python3.X/dist-packages, the
launcher and the daemons in <prefix>/bin)."""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
# <repo>, from worker/python/sparta; <prefix>, from lib/python3.X/dist-packages/sparta.
_TREE = os.path.dirname(os.path.dirname(os.path.dirname(_HERE)))
_PREFIX = os.path.dirname(_TREE)

if os.path.isfile(os.path.join(_TREE, "scripts", "sparta")):
    ROOT = _TREE
    LAUNCHER = os.path.join(_TREE, "scripts", "sparta")
    _BIN = os.path.join(_TREE, "build", "bin")
else:
    ROOT = _PREFIX
    LAUNCHER = os.path.join(_PREFIX, "bin", "sparta")
    _BIN = os.path.join(_PREFIX, "bin")


def bin_dir():
    return os.environ.get("SPARTA_BIN", _BIN)


def ctl_path():
    return os.path.join(bin_dir(), "sparta-ctl")
