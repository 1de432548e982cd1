"""What never ships to Lambda: the `mailpixel` CLI, replay, erasure, re-enrichment, range
refresh, and the local stack that `make run` starts."""
