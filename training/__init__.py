"""Training, datasets, evaluation and experiment tracking of the face classifier."""
