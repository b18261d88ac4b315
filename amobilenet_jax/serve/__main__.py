"""``python -m amobilenet_jax.serve``."""

from amobilenet_jax.serve.cli import main

main()
