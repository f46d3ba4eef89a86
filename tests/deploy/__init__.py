"""Tests of the deployment files: deploy/, dashboards/, docs/runbooks/."""
