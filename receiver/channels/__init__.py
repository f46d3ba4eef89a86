"""Delivery channels: email (SMTP failover chain) and Slack."""
