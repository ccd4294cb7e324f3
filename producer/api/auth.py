"""Bearer-token auth for the API (``BULKTAG_API_TOKEN``).

With no token set the API is open: fine on loopback (the default bind), not on a
network. With one set, every route that reads or changes jobs needs
``Authorization: Bearer <token>``; ``/healthz`` and the page's static files stay open so
load balancers can probe and the page can load and then ask for the token.
"""

from __future__ import annotations

import secrets

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tasks.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="BULKTAG_API_TOKEN")


def token_matches(expected: str, given: str) -> bool:
    """Constant-time comparison, so response timing does not leak the token."""
    return secrets.compare_digest(expected.encode(), given.encode())


def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> None:
    """FastAPI dependency: refuse the request unless auth is off or the token matches.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when the token is missing
            or wrong.
    """
    settings: Settings = request.app.state.settings
    if settings.api_token is None:
        return
    if credentials is None or not token_matches(settings.api_token, credentials.credentials):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong API token (Authorization: Bearer <BULKTAG_API_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
