"""Making and measuring a bundle: the trainer, calibration fitting, evaluation, model cards, export."""
