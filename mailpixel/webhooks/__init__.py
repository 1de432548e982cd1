"""The `webhooks` function: delivers webhook events from the webhook queue, signed, with retries
and backoff for a day, then the dead-letter queue."""
