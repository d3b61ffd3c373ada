"""``npo serve``: NPO as an HTTP service next to a live system (FastAPI on uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

from npo.cli.common import DbOption, cli_errors, default_db, note


def register(app: typer.Typer) -> None:
    @app.command("serve", short_help="Run the HTTP service (decide, feedback, monitor, ...).")
    def serve_cmd(
        db: DbOption = default_db(),
        config: Annotated[
            str | None,
            typer.Option("--config", help="Loop configuration (TOML), stored at start-up."),
        ] = None,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(envvar="NPO_PORT", help="Port to listen on.")] = 8000,
        workers: Annotated[
            int, typer.Option(help="Worker processes (more than 1 needs PostgreSQL).")
        ] = 1,
        agreement: Annotated[
            float,
            typer.Option(help="Share of reviewed decisions handed to a second reviewer."),
        ] = 0.1,
        max_body_mb: Annotated[float, typer.Option(help="Larger request bodies get 413.")] = 32.0,
        claim_ttl: Annotated[
            float, typer.Option(help="Seconds a review-queue claim lasts.")
        ] = 600.0,
        trusted: Annotated[
            list[str] | None,
            typer.Option("--trusted", help="A type to trust in skops policies (repeatable)."),
        ] = None,
        seed: Annotated[int, typer.Option(help="Review sampling seed.")] = 0,
        log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
    ) -> None:
        """Serve decide / decisions / feedback / review-queue / alignment / monitor /
        policies / thresholds / rollback / audit / tokens over HTTP with bearer tokens
        (create the first with: npo token create --role admin --name NAME). Stops
        gracefully on SIGTERM: requests in flight are answered and stored."""
        from npo.service.server import check, serve
        from npo.service.settings import Settings

        with cli_errors(False, {"max_body_bytes": "--max-body-mb", "claim_ttl_s": "--claim-ttl"}):
            settings = Settings.from_dict(
                {
                    "db": db,
                    "config": config,
                    "agreement": agreement,
                    "max_body_bytes": int(max_body_mb * 1024 * 1024),
                    "claim_ttl_s": claim_ttl,
                    "seed": seed,
                    "trusted": tuple(trusted or ()),
                }
            )
            info = check(settings, workers)
        served = info["policy"] or "none yet (npo policy add, then npo promote)"
        note(
            f"npo serve: http://{host}:{port} ({info['backend']}, {workers} worker(s)); "
            f"serving policy: {served}; OpenAPI at /docs and /openapi.json",
            style="green",
        )
        serve(settings, host=host, port=port, workers=workers, log_level=log_level)
