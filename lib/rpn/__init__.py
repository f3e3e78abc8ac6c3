"""Anchors and RPN training targets."""
