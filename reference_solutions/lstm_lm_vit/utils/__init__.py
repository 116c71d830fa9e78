"""Data loading and small helpers for the LSTM and ViT experiments."""
