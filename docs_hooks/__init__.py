"""mkdocs build hooks (mkdocs.yml `hooks:`); a package so tests can import what they share."""
