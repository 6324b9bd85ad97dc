"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import text

from lotlens.api.deps import State
from lotlens.api.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthOut, operation_id="healthz")
async def healthz() -> HealthOut:
    """The process answers (nothing else is checked: it must stay fast under any load)."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, operation_id="readyz", responses={503: {"model": ReadyOut}})
def readyz(state: State, response: Response) -> ReadyOut:
    """The model is loaded and the store answers."""
    store = "ok"
    try:
        with state.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 -- any store failure means "not ready", said in the body
        store = f"error: {type(exc).__name__}"
        response.status_code = 503
    return ReadyOut(model=state.champion().version, store=store)


@router.get("/metrics", response_class=PlainTextResponse, operation_id="metrics")
def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
