"""`python -m inference_app`: read settings (flags or `ACA_INFER_*` variables), load the engine in
the background and serve the API and the chat UI with uvicorn. `--help` lists every setting."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from inference_app.settings import Settings, SettingsError, describe, load_settings

log = logging.getLogger("inference_app")

EXIT_BAD_SETTINGS = 2


def build_engine(settings: Settings):  # type: ignore[no-untyped-def]  # engine type is lazy
    # Imported here so `--help` and bad settings answer without loading torch.
    from inference_app.engine.transformers_engine import TransformersEngine

    return TransformersEngine(
        model_path=settings.model_path,
        adapters=settings.adapters,
        max_batch_size=settings.max_batch_size,
        max_queue=settings.max_queue,
        quantization=settings.quantization,
        cache_dir=settings.runtime_dir / "models",
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, os.environ)
    except SettingsError as exc:
        print(f"inference_app: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS

    # Progress bars are not log lines: they would break the one-JSON-object-per-line stream.
    # Set before anything imports huggingface_hub, which reads it once.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    import uvicorn

    from inference_app.app import create_app
    from inference_app.logging_setup import adopt_library_loggers, configure_logging

    configure_logging(settings.log_level)
    log.info("starting", extra={"settings": describe(settings)})
    try:
        engine = build_engine(settings)
    except ValueError as exc:  # the engine refuses its arguments (e.g. a reserved adapter name)
        print(f"inference_app: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    app = create_app(settings, engine)
    adopt_library_loggers()  # the engine and the UI imported libraries with their own handlers
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # Behind the HTTPS ingress: take the scheme and client from its X-Forwarded-* headers,
        # so the UI builds https links and the session cookie is marked Secure.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
