"""The marketplace's HTTP admin API (JSON), to be served behind ``AuthenticatingApp``.

Every route reads the caller's :class:`~mobius_rpc.security.principal.Principal`
from the ASGI scope, where the security layer's authentication left it; a
request without one is refused with 401 (the app never runs unauthenticated,
even if mounted by mistake without the wrapper).  The marketplace's own rules
then apply: installations are managed by owners and admins of their own
organization only, members read them, any authenticated user rates as itself.

========  ==============================================  ==========================
GET       /market/servers?q=&category=&registry=...       search (as ``mobius market search``)
GET       /market/servers/{name}                           one entry in full
GET/PUT   /market/servers/{name}/ratings                   ratings; PUT {"stars", "review"}
POST      /market/catalog                                  {"url"} sync, or {"servers": [...]}
GET/POST  /market/orgs/{org}/installations                 list; install {"name", "config"}
GET       /market/orgs/{org}/installations/{name}          one installation
PATCH     /market/orgs/{org}/installations/{name}          {"enabled"}, {"config"}, {"version"}
DELETE    /market/orgs/{org}/installations/{name}          uninstall
POST      /market/orgs/{org}/installations/{name}/health   start it and list its tools
GET       /market/sandbox                                  what this machine enforces
========  ==============================================  ==========================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..security.principal import Principal
from ..transports.asgi_context import PRINCIPAL_KEY
from .catalog import SearchQuery, entries_from_document
from .inputs import InputError, MissingConfiguration
from .installer import InstallError
from .registry import RegistryError
from .serverjson import ServerJsonError
from .service import Conflict, Forbidden, MarketError, Marketplace, NotFound
from .store import Installation

__all__ = ("market_app", "MAX_BODY")

MAX_BODY = 1 << 20
Handler = Callable[[Request, Principal], Awaitable[Any]]


class _HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _public(inst: Installation) -> dict[str, Any]:
    return {"org": inst.org_id, "name": inst.name, "version": inst.version,
            "enabled": inst.enabled, "config": inst.config, "secrets": sorted(inst.secrets),
            "health": inst.health, "installedBy": inst.installed_by,
            "createdAt": inst.created_at, "updatedAt": inst.updated_at}


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise _HttpError(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _HttpError(400, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise _HttpError(400, "the body must be a JSON object")
    return value


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _HttpError(400, f"{what} must map names to strings")
    return value


def _endpoint(handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        principal = request.scope.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal) or not principal.user:
            return _json(401, {"error": "authentication required"})
        try:
            return _json(status, await handler(request, principal))
        except _HttpError as exc:
            return _json(exc.status, {"error": str(exc), **exc.extra})
        except MissingConfiguration as exc:
            return _json(422, {"error": str(exc), "missing": exc.missing})
        except Forbidden as exc:
            return _json(403, {"error": str(exc)})
        except NotFound as exc:
            return _json(404, {"error": str(exc)})
        except Conflict as exc:
            return _json(409, {"error": str(exc)})
        except InstallError as exc:
            return _json(502, {"error": str(exc)[:2000]})
        except RegistryError as exc:
            return _json(502, {"error": str(exc)})
        except (InputError, ServerJsonError, MarketError, ValueError) as exc:
            return _json(400, {"error": str(exc)})
    return endpoint


def market_app(market: Marketplace) -> Starlette:
    """The admin API for ``market`` (wrap it in ``AuthenticatingApp``)."""

    async def search(request: Request, _: Principal) -> Any:
        q = request.query_params
        secrets = q.get("secrets")
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            raise _HttpError(400, "limit must be an integer") from None
        page = await market.search(SearchQuery(
            text=q.get("q"), category=q.get("category"), registry=q.get("registry"),
            transport=q.get("transport"),
            needs_secrets=None if secrets is None else secrets in ("1", "true", "yes"),
            sort=q.get("sort", "relevance"), cursor=q.get("cursor"), limit=limit))
        return {"servers": [e.summary() for e in page.items], "total": page.total,
                "nextCursor": page.next_cursor}

    async def show(request: Request, _: Principal) -> Any:
        return await market.show(request.path_params["name"])

    async def ratings(request: Request, principal: Principal) -> Any:
        name = request.path_params["name"]
        if request.method == "PUT":
            body = await _body(request)
            review = body.get("review", "")
            if not isinstance(review, str):
                raise _HttpError(400, "review must be a string")
            await market.rate(name, body.get("stars"), review,  # type: ignore[arg-type]
                              user=principal.user, actor=principal)
        return await market.ratings(name)

    async def catalog(request: Request, principal: Principal) -> Any:
        body = await _body(request)
        if isinstance(body.get("url"), str):
            result = await market.import_registry(body["url"], actor=principal)
            return {"imported": len(result.entries), "pages": result.pages,
                    "rejected": [{"item": w, "error": e} for w, e in result.rejected]}
        entries = entries_from_document(body, "api")
        return {"imported": await market.add_entries(entries, actor=principal, source="api")}

    async def installations(request: Request, principal: Principal) -> Any:
        org = request.path_params["org"]
        if request.method == "POST":
            body = await _body(request)
            name, version = body.get("name"), body.get("version")
            if not isinstance(name, str) or not (version is None or isinstance(version, str)):
                raise _HttpError(400, "name (and version) must be strings")
            inst = await market.install(org, name, version=version,
                                        config=_strings(body.get("config", {}), "config"),
                                        actor=principal)
            return _public(inst)
        return [_public(i) for i in await market.installations(org, actor=principal)]

    async def installation(request: Request, principal: Principal) -> Any:
        org, name = request.path_params["org"], request.path_params["name"]
        if request.method == "DELETE":
            await market.uninstall(org, name, actor=principal)
            return {"uninstalled": name}
        if request.method == "PATCH":
            body = await _body(request)
            inst = await market.get(org, name, actor=principal)
            if "config" in body:
                inst = await market.configure(org, name, _strings(body["config"], "config"),
                                              actor=principal)
            if "version" in body:
                if not isinstance(body["version"], str):
                    raise _HttpError(400, "version must be a string")
                inst = await market.upgrade(org, name, version=body["version"],
                                            actor=principal)
            if "enabled" in body:
                if not isinstance(body["enabled"], bool):
                    raise _HttpError(400, "enabled must be true or false")
                inst = await market.set_enabled(org, name, body["enabled"], actor=principal)
            return _public(inst)
        return _public(await market.get(org, name, actor=principal))

    async def health(request: Request, principal: Principal) -> Any:
        return await market.check_health(request.path_params["org"],
                                         request.path_params["name"], actor=principal)

    async def sandbox(request: Request, _: Principal) -> Any:
        return {"enforced": market.sandbox.enforced}

    routes = [
        Route("/market/servers", _endpoint(search)),
        Route("/market/servers/{name:path}/ratings", _endpoint(ratings), methods=["GET", "PUT"]),
        Route("/market/servers/{name:path}", _endpoint(show)),
        Route("/market/catalog", _endpoint(catalog), methods=["POST"]),
        Route("/market/orgs/{org}/installations", _endpoint(installations),
              methods=["GET", "POST"]),
        Route("/market/orgs/{org}/installations/{name:path}/health", _endpoint(health),
              methods=["POST"]),
        Route("/market/orgs/{org}/installations/{name:path}", _endpoint(installation),
              methods=["GET", "PATCH", "DELETE"]),
        Route("/market/sandbox", _endpoint(sandbox)),
    ]
    return Starlette(routes=routes)
