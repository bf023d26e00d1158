"""Sparta from Python.

    sparta.launch(config, overrides={...}, run_dir=None) -> Job   (sparta.jobs)
    sparta.sweep(config, {key: [values]}, parallel=N)  -> rows  (sparta.sweep)
    sparta.predict.PredictClient([urls], model)                  (sparta.predict)
"""

from .jobs import Job, JobFailed, SpartaError, launch
# The function, as `sparta.sweep(...)`; `from sparta.sweep import ...` still
# finds the module.
from .sweep import sweep

__all__ = ["Job", "JobFailed", "SpartaError", "launch", "sweep"]
