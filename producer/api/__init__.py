"""bulktag's HTTP API and web dashboard: other applications submit and watch jobs here.

``create_api(settings)`` builds the FastAPI app; ``bulktag api`` serves it with uvicorn.
The API is a producer like the CLI: it writes jobs to Redis and sends chunk tasks by
name, so it never imports torch.
"""

from producer.api.app import create_api, serve

__all__ = ["create_api", "serve"]
