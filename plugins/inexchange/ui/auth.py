"""Who may see the "InExchange dispatch" page: Airflow's own authentication and authorisation.

The api-server's auth manager issues a JWT at login and keeps it in the ``_token`` cookie (API
clients send it as ``Authorization: Bearer``). :func:`dispatch_viewer`, a dependency of every
route of the page's app, resolves that token with Airflow's ``GetUserDep`` (401 without a token
or when it expired, 403 when it is invalid) and then asks the auth manager whether the user may
see the custom view :data:`RESOURCE_NAME` (403 when not; with the simple auth manager every role
from ``viewer`` up may).
"""

from __future__ import annotations

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response

#: the custom view name the auth manager is asked about
RESOURCE_NAME = "InExchange dispatch"


def dispatch_viewer(user: GetUserDep) -> BaseUser:
    """The logged-in user, when the auth manager lets them see the dispatch page.

    :param user: resolved by Airflow from the ``_token`` cookie or the bearer token.
    :raises HTTPException: 403 when the user may not see the page.
    """
    allowed = get_auth_manager().is_authorized_custom_view(method="GET", resource_name=RESOURCE_NAME, user=user)
    if not allowed:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Forbidden")
    return user


def login_redirect_or_error(request: Request, exc: HTTPException) -> Response:
    """Send a browser without a valid session to Airflow's login page; answer API clients with the error.

    Only a 401 (no token, or an expired one) of a request that accepts HTML is redirected, with
    the page as ``next``; everything else keeps its status and a short JSON detail.

    :param request: the refused request.
    :param exc: why it was refused.
    """
    wants_html = "text/html" in request.headers.get("accept", "")
    if exc.status_code == status.HTTP_401_UNAUTHORIZED and wants_html and request.method == "GET":
        login_url = get_auth_manager().get_url_login(next_url=str(request.url))
        return RedirectResponse(url=login_url, status_code=status.HTTP_303_SEE_OTHER)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
