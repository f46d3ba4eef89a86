"""alertmail: the Alertmanager webhook receiver that delivers email and Slack."""

__version__ = "0.1.0"
