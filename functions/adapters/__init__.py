"""One module per outside service (Graph, Key Vault, Tables, Queues, webhooks).

Each turns its SDK's errors into core errors.
"""
