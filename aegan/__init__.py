"""AEGAN-AD: autoencoder generator + WGAN-GP critic for unsupervised anomalous sound detection."""

__version__ = "0.1.0"
