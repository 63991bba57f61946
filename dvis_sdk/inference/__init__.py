"""Inference pipeline: preprocessing, post-processing and the user-facing predictor."""
