"""Thin views, one blueprint per area."""
