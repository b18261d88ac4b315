"""amobilenet-jax: A-MobileNet (Nan et al., 2021) for facial expression recognition in JAX/Flax."""

__version__ = "0.1.0"
