"""The `drain` function: opens the pixel could not write, from the SQS fallback queue back into
the events table."""
