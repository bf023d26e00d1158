"""Where Sparta's programs are: the launcher in the source tree this package
belongs to, and the daemons in $SPARTA_BIN (else <repo>/build/bin), as
`scripts/sparta` finds them."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LAUNCHER = os.path.join(ROOT, "scripts", "sparta")


def bin_dir():
    return os.environ.get("SPARTA_BIN", os.path.join(ROOT, "build", "bin"))


def ctl_path():
    return os.path.join(bin_dir(), "sparta-ctl")
