"""Audit a labelled set: out-of-fold probabilities, confident learning, and the findings a person reviews."""
