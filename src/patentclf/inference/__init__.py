"""Prediction and its post-processing: engines, the Classifier, calibration, the patent index, main groups, the record."""
