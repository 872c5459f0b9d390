"""Celery app and thin tasks that execute runs."""
