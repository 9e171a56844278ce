"""Training: a config, one feed, ``model.fit`` with checkpoints, data parallelism, and whole runs.

``config`` (what a run is), ``inputs`` (the one feed), ``callbacks`` (checkpoint, history, time
budget), ``distributed`` (data-parallel on JAX), ``fit`` (split, compile, fit, resume), ``run``
(a run end to end: data, fit, save, evaluate once, report) and ``tune`` (Optuna over runs).
The package imports nothing itself, so ``cnnkit.training.config`` stays free of Keras.
"""
