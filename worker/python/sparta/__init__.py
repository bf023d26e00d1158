"""Sparta from Python.

    sparta.launch(config, overrides={...}, run_dir=None) -> Job   (sparta.jobs)
    sparta.sweep(config, {key: [values]}, parallel=N)  -> rows  (sparta.sweep)
    sparta.predict.PredictClient([urls], model)                  (sparta.predict)
    sparta.Worker(config, tables) with sparta.Sparse/Dense       (sparta.worker)

sparta.Worker needs the C++ module sparta._native (built by the project's
CMake build when pybind11-dev is present, into <build>/python/sparta) and
NumPy; the rest is plain Python.
"""

import os as _os

# The package may be split: these files in the source tree, the module in a
# build tree (<build>/python/sparta) or wherever `cmake --install` put both.
# Any sparta/ folder on sys.path belongs to it, and so do the build trees
# that scripts/sparta uses ($SPARTA_BUILD, else <repo>/build).
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
for _build in (_os.environ.get("SPARTA_BUILD"), _os.path.join(_os.path.dirname(_os.path.dirname(
        _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))), "build")):
    if _build and _os.path.isdir(_os.path.join(_build, "python", "sparta")):
        __path__.append(_os.path.join(_build, "python", "sparta"))

from .jobs import Job, JobFailed, SpartaError, launch
# The function, as `sparta.sweep(...)`; `from sparta.sweep import ...` still
# finds the module.
from .sweep import sweep

__all__ = ["Dense", "Job", "JobFailed", "JobStopped", "Sparse", "SpartaError", "Worker", "launch", "sweep"]


def __getattr__(name):
    # sparta.Worker and its tables load the C++ module on first use, so that
    # launch/sweep/predict work without it.
    if name in ("Worker", "Sparse", "Dense", "JobStopped"):
        from . import worker
        return getattr(worker, name)
    raise AttributeError(f"module 'sparta' has no attribute '{name}'")
