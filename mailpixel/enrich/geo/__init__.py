"""IP geolocation for enrichment: providers, caches, and the locator that puts them together."""
