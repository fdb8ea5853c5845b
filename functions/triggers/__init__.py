"""Thin triggers: parse input, call one core function, map typed errors to a status or a retry."""
