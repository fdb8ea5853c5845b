"""One module per outside service (Graph, Key Vault, Tables, Queues, webhooks); each maps SDK errors to core errors."""
