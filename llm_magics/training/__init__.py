"""Training: one train function and the runners around it (the kernel, a thread, a detached
process, Ray, Ray Tune), planned and started by ``launch``, recorded by ``recorder``."""

from llm_magics.core.lazy import exports

_WHERE = {
    "SweepRun": "sweeps",
    "TrainJob": "train",
    "plan_run": "launch",
    "plan_sweep": "sweeps",
    "start_run": "launch",
    "start_sweep": "sweeps",
    "train": "train",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
