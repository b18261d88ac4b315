"""amobilenet-jax: A-MobileNet (Nan et al., 2021) for facial expression recognition in JAX/Flax.

``amobilenet_jax.analyze`` and ``amobilenet_jax.to_dataframe`` (``api``) load on first use, so
importing the package costs nothing.
"""

__version__ = "0.1.0"
__all__ = ["analyze", "to_dataframe"]


def __getattr__(name: str):
    if name == "analyze":
        from amobilenet_jax.api import analyze

        return analyze
    if name == "to_dataframe":
        from amobilenet_jax.api import to_dataframe

        return to_dataframe
    raise AttributeError(f"module 'amobilenet_jax' has no attribute {name!r}")
