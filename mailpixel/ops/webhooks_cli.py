"""`mailpixel webhooks test`: POST a signed sample event to the webhook URL and say what came back."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from mailpixel.config import Settings
from mailpixel.model.webhooks import HUMAN_CLICK, USER_SIGNED, encode, post

SAMPLE_CLIENT = {"name": "Chrome", "version": "131.0.0", "os": "Windows", "device": "Other"}


def sample_event() -> dict[str, Any]:
    """A human click as the webhooks function sends one (a fresh id each time)."""
    return {
        "id": f"test_{uuid.uuid4().hex}",
        "type": HUMAN_CLICK,
        "email_id": "mailpixel-webhook-test",
        "user_id": "test-user",
        "signature_scope": USER_SIGNED,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "url": "https://example.com/",
        "client": SAMPLE_CLIENT,
        "geo": {"country": "US", "source": "test"},
        "verdict": {"machine": False, "reason": None, "proxy": None, "evidence": {"rule": "human"}},
        "test": True,
    }


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("webhooks", help="webhook deliveries")
    actions = parser.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    test = actions.add_parser("test", help="send a signed sample event and print the receiver's answer")
    test.add_argument("--url", help="default: MAILPIXEL_WEBHOOK_URL, else the SSM parameter's")
    test.add_argument("--secret", help="default: MAILPIXEL_WEBHOOK_SECRET, else the SSM parameter's")
    test.add_argument(
        "--stage", help="the deployed stage's target: its SSM parameter /mailpixel/STAGE/webhook, in AWS"
    )
    test.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from mailpixel.webhooks.handler import load_target

    settings = Settings.from_env(local_default=True)
    if args.stage:
        from mailpixel.ops.stage import parameter_name

        settings = settings.with_overrides(
            webhook_url=None, webhook_secret=None, webhook_parameter=parameter_name(args.stage, "webhook")
        )
    target = load_target(settings) if not (args.url and args.secret) else None
    url = args.url or (target[0] if target else None)
    secret = args.secret or (target[1] if target else None)
    if not url or not secret:
        print("mailpixel: no webhook URL and secret (MAILPIXEL_WEBHOOK_URL, MAILPIXEL_WEBHOOK_SECRET)")
        return 2
    event = sample_event()
    delivery = post(url, secret, encode(event), event["id"])
    print(
        json.dumps(
            {"url": url, "id": event["id"], "status": delivery.describe(), "delivered": delivery.delivered}
        )
    )
    return 0 if delivery.delivered else 1
