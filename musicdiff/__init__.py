"""musicdiff: a reproducible benchmark for music diffusion models.

The library knows nothing of DVC; every stage in ``pipelines/`` is a thin wrapper that reads
``params.yaml``, calls into this package and logs to MLflow. Submodules are imported lazily so that
``import musicdiff`` stays cheap and never downloads anything.
"""

__version__ = "0.1.0"
