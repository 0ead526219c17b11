"""``/v1/search``: ended tracks by an embedding, a track or an image of the object."""

from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile
from numpy.typing import NDArray
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from crossview.search.engine import Hit
from crossview.search.index import Filter
from crossview.serve import usecases
from crossview.serve.deps import Caller, MetricsDep, ServiceDep
from crossview.serve.errors import InvalidRequest
from crossview.serve.http import access
from crossview.serve.keys import Scope as KeyScope
from crossview.serve.schemas import ErrorOut, FilterIn, HitOut, SearchIn, SearchOut
from crossview.serve.service import hit_fields, query_embedding

router = APIRouter()


@router.post(
    "/v1/search",
    tags=["search"],
    responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    openapi_extra=access(KeyScope.SEARCH),
)
def search(body: SearchIn, _: Caller, service: ServiceDep, metrics: MetricsDep) -> SearchOut:
    """Search ended tracks by an embedding or by a track; filters and re-ranking."""
    hits = usecases.search(
        service,
        metrics,
        embedding=query_vector(body, service.dim),
        track=body.track,
        k=body.k,
        filter=body.filter.to_filter(),
        rerank=body.rerank,
    )
    return search_out(hits)


@router.post(
    "/v1/search/image",
    tags=["search"],
    responses={413: {"model": ErrorOut}, 415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    openapi_extra=access(KeyScope.SEARCH),
)
async def search_image(
    _: Caller,
    service: ServiceDep,
    metrics: MetricsDep,
    image: Annotated[UploadFile, File(description="a crop of the object: JPEG, PNG, WebP or BMP")],
    k: Annotated[int, Form(ge=1, le=1000)] = 10,
    cameras: Annotated[str | None, Form(description="comma-separated camera ids")] = None,
) -> SearchOut:
    """Search ended tracks by an image of the object (embedded by the service's embedder).

    The image's header is checked against the size limits before it is decoded, and it is
    decoded off the event loop, a bounded number at once.
    """
    data = await image.read()
    hits = await run_in_threadpool(
        usecases.search_by_image, service, metrics, data, k=k, filter=camera_filter(cameras)
    )
    return search_out(hits)


def query_vector(body: SearchIn, dim: int) -> NDArray[np.float32] | None:
    """The query's embedding (``None`` when it names a track); exactly one of the two is given."""
    if (body.embedding is None) == (body.track is None):
        raise InvalidRequest("give exactly one of 'embedding' or 'track'")
    return None if body.embedding is None else query_embedding(body.embedding, dim)


def camera_filter(cameras: str | None) -> Filter | None:
    """The form's comma-separated camera ids as a filter (``None``: every camera); a list the
    filter refuses (too many, too long) is the client's ``InvalidRequest``."""
    try:
        return FilterIn(cameras=[c for c in cameras.split(",") if c] if cameras else None).to_filter()
    except ValidationError as error:
        problem = error.errors()[0]
        raise InvalidRequest(f"cameras: {problem['msg']}") from None


def search_out(hits: list[Hit]) -> SearchOut:
    """The hits as both APIs answer them (``hit_fields``)."""
    return SearchOut(hits=[HitOut(**hit_fields(hit)) for hit in hits])
