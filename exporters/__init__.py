"""alertmail's log-metrics exporter: log lines in, Prometheus metrics out."""
