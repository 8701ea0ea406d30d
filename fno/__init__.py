"""fno-scaling: scaling and transfer-learning studies of pre-trained Fourier Neural Operators."""

__version__ = "0.1.0"
