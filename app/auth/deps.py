"""`CurrentCaller`: the authenticated caller of a request, from `Authorization: Bearer <key>`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.auth import service as auth_service
from app.core.db import SessionDep
from app.core.deps import SettingsDep
from app.core.errors import Unauthenticated
from app.models import Caller


async def get_current_caller(request: Request, session: SessionDep, settings: SettingsDep) -> Caller:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthenticated(
            "You didn't provide an API key. Use the header 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    return await auth_service.authenticate(session, presented_key=credentials.strip(), dev_mode=settings.is_dev)


CurrentCaller = Annotated[Caller, Depends(get_current_caller)]
