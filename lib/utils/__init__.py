"""Shared utilities: logging setup (logger), and others added alongside it."""
