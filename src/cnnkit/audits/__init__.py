"""Audit a labelled set: out-of-fold probabilities, confident learning, and the findings a person reviews.

Light on import (the command line's options read the defaults below); :mod:`cnnkit.audits.api` does the work.
"""

DEFAULT_FOLDS = 5
# Minutes of training, all folds together: two a fold, a short schedule on a 2-core CPU (what it buys in finding
# wrong labels is measured by benchmarks/label_noise.py).
DEFAULT_BUDGET_MINUTES = 10.0
