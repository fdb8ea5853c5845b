"""Adopting connector apps people made by hand: see docs/adoption.md.

Public surface: `asking` (is_adoption, validate_adoption: an adoption request checked against the
tenant before anything is made, every problem at once). Above inventory (the profile match) and
intake (the rest of the body is a registration request as today) in the core-layers contract.
"""
