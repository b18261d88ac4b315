"""``python -m amobilenet_jax.predict``."""

from amobilenet_jax.predict.cli import main

main()
