"""A local HTTP service for predict's records: ``python -m amobilenet_jax.serve``.

``POST /v1/predict`` takes an image and answers the records ``analyze`` gives for it; the faces
of concurrent requests are classified together in one compiled call (``batcher``). ``uploads``
reads an image within the server's limits, ``service`` finds the faces and makes the records,
``app`` holds the routes and the guards, ``cli`` the flags. docs/serve.md describes it.
"""

from amobilenet_jax.serve.app import create_app
from amobilenet_jax.serve.batcher import Batcher
from amobilenet_jax.serve.service import Service

__all__ = ["Batcher", "Service", "create_app"]
