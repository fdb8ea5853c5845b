"""Accepting a registration request, from HTTP or the queue: parse, validate, record once.

Public surface: `requests` (parse_registration_request, validate_request, ValidatedRequest),
`parser` (RequestParser: field-by-field checks collecting every problem) and `accept`
(accept, record_invalid: one registration per (tenant, requestId)).
"""
