"""The temporal U-Net pipeline: normalise a movie, cut temporal windows, train, predict
(tiled), turn probabilities into instance labels with IDs through time, and track.

Importing this package is cheap (no torch); the engines import it when they run.
"""
