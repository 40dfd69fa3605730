"""GET /recommendations/{user_id} and GET /similar-items/{item_id} on the receiver's app."""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amp_personalize.serving.cache import CacheUnreadable, RecommendationCache
from amp_personalize.settings import MAX_NUM_RESULTS


def _json(status: int, body: dict) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _num_results(request: Request, default: int) -> int | Response:
    raw = request.query_params.get("num_results")
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also passes '²' (which int() refuses) and '٣' or '３' (which
    # it takes); and int() refuses past 4,300 digits, so only the significant ones go to it.
    significant = raw.lstrip("0")
    digits = raw.isascii() and raw.isdigit() and len(significant) <= len(str(MAX_NUM_RESULTS))
    n = int(significant or 0) if digits else 0
    if not 1 <= n <= MAX_NUM_RESULTS:
        return _json(400, {"code": 400, "error": f"num_results must be an integer from 1 to {MAX_NUM_RESULTS}, got {raw[:20]!r}"})
    return n


def _items(pairs: list[tuple[str, float]]) -> list[dict]:
    return [{"item_id": item, "score": round(float(score), 6)} for item, score in pairs]


def serving_routes(cache: RecommendationCache, default_results: int) -> list[Route]:
    async def recommendations(request: Request) -> Response:
        n = _num_results(request, default_results)
        if isinstance(n, Response):
            return n
        user_id = request.path_params["user_id"]
        if not user_id:  # a client that lost its user id must hear so, not get strangers' list
            return _json(404, {"code": 404, "error": "no user id: GET /recommendations/{user_id}"})
        try:
            items, source, version = await run_in_threadpool(cache.recommend, user_id, n)
        except CacheUnreadable as error:
            return _json(503, {"code": 503, "error": str(error)})
        if not items and version is None:
            return _json(503, {"code": 503, "error": "no recommendations cached yet: train a model (amp-personalize train)"})
        return _json(200, {"items": _items(items), "source": source, "model_version": version})

    async def similar_items(request: Request) -> Response:
        n = _num_results(request, default_results)
        if isinstance(n, Response):
            return n
        item_id = request.path_params["item_id"]
        if not item_id:
            return _json(404, {"code": 404, "error": "no item id: GET /similar-items/{item_id}"})
        try:
            items, version = await run_in_threadpool(cache.similar, item_id, n)
        except CacheUnreadable as error:
            return _json(503, {"code": 503, "error": str(error)})
        if version is None:
            return _json(503, {"code": 503, "error": "no similar items cached yet: train a model (amp-personalize train; on Personalize this needs a SIMS campaign)"})
        if items is None:
            return _json(404, {"code": 404, "error": f"item {item_id[:200]!r} is not in the similar-items cache (model {version})"})
        return _json(200, {"items": _items(items), "source": "similar_items", "model_version": version})

    return [
        Route("/recommendations/{user_id:path}", recommendations, methods=["GET"]),
        Route("/similar-items/{item_id:path}", similar_items, methods=["GET"]),
    ]
