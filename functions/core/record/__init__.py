"""The registration record and the vocabulary every capability speaks; everything builds on it.

Public surface: `models` (requests, permissions, credentials, statuses, SecretValue), `errors`
(the typed errors adapters raise and triggers map), `registration` (Registration and its parts),
`documents` (the record as a stored document), `keeper` (RecordKeeper: lease + ETag),
`schedule` (when a credential is due; RotationJob and the expiry index's keys), `steps`
(naming the step an error came from, running steps together) and `durations` (ISO 8601).
"""
