"""mailpixel: email open tracking on AWS Lambda, API Gateway and DynamoDB."""

from __future__ import annotations

__version__ = "0.1.0"
