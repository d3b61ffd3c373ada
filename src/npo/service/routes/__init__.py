"""One router per resource; route functions only translate HTTP to the functions the CLI
uses too (the loop, the store, the lifecycle in :mod:`npo.service.loop_gateway`)."""

from npo.service.routes import (
    alignment,
    audit,
    decide,
    decisions,
    feedback,
    health,
    monitor,
    policies,
    review_queue,
    rollback,
    thresholds,
    tokens,
)

ROUTERS = [
    decide.router,
    decisions.router,
    feedback.router,
    review_queue.router,
    alignment.router,
    monitor.router,
    policies.router,
    rollback.router,
    thresholds.router,
    audit.router,
    tokens.router,
    health.router,
]
