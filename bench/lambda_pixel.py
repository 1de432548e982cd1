"""The real `handler.py`, loaded in this process as Lambda would load it, with a chosen environment."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.stack import ROOT
from mailpixel.config import Settings

_loads = itertools.count()


class LambdaContext:
    """The few attributes serverless-wsgi and logging read from Lambda's context object."""

    function_name = "mailpixel-bench-pixel"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mailpixel-bench-pixel"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 6000


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make `Settings.from_env()` give `settings` back."""
    return {
        "MAILPIXEL_TABLE": settings.table,
        "MAILPIXEL_META_TABLE": settings.meta_table,
        "DYNAMODB_ENDPOINT_URL": settings.endpoint_url or "",
        "MAILPIXEL_DATA_DIR": settings.data_dir,
        "AWS_REGION": settings.region,
        "MAILPIXEL_LOG_LEVEL": settings.log_level,
        "STRIP_STAGE_PATH": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_handler(env: Mapping[str, str]) -> ModuleType:
    """Load `handler.py` as a new module (a cold start) with `env` set, and build its app.

    Each call gives a separate module object, with its own settings and app, so several
    configurations can be measured interleaved, each through its own real `pixel` function.
    """
    name = f"bench_handler_{next(_loads)}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with environment(env):
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        sys.modules[name] = module
        spec.loader.exec_module(module)
        module.get_app()  # builds the app now (the handler builds it lazily), with this env
    return module


@contextmanager
def stderr_to(log_file: Path) -> Iterator[None]:
    """mailpixel logs to whatever sys.stderr is: send it to a file while measuring. In Lambda
    each open's log line is written to a pipe, so it is part of the cost, not left out."""
    with log_file.open("a", encoding="utf-8") as fh, redirect_stderr(fh):
        yield


def invoker(module: ModuleType) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`module.pixel(event, context)`, as Lambda calls it."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = module.pixel(event, LambdaContext())
        return result

    return invoke
