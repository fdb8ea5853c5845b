"""Registrar: registers Entra ID apps for third-party connectors and keeps their credentials alive."""
