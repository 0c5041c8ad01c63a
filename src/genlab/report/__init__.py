"""Reports: a self-contained HTML page and matplotlib plots for ``genlab compare``."""
