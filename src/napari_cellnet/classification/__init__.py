"""The morphology pipeline: cut and align single-cell crops (from a gallery or a Labels
layer), train CNN classifiers with k-fold cross-validation, report and classify.

Importing this package is cheap (no torch); the engines import it when they run.
"""
