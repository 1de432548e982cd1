"""What mailpixel stores, independent of where it runs: the open event, the key formats of both
tables, the aggregate items' vocabulary, and the query vocabulary the readers share."""
