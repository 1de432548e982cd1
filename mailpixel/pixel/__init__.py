"""The `pixel` function: the public, unauthenticated `/pixel` (and `/health`). Validates the
request, verifies the signature, builds the open event and makes its one durable write."""
