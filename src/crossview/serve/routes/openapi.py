"""``/openapi.json`` behind a credential (read scope); included unless the docs are public."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from crossview.serve.http import access
from crossview.serve.keys import Scope as KeyScope

router = APIRouter()


@router.get("/openapi.json", include_in_schema=False, openapi_extra=access(KeyScope.READ))
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())
