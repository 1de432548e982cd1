"""The `api` function: the query API (`/api/*`, bearer keys) and the dashboard that reads it,
under a role that may read opens and aggregates and write nothing."""
