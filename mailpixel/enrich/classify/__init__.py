"""Mail client, machine-or-person verdict and proxy for one open: no I/O, only the user agent,
the address and the shipped IP ranges."""
