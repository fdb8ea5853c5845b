"""From accepted to active (or failed), crash-safe step by step, and the registration's lifecycle.

Public surface: `workflow` (Provisioner, WorkflowSettings), `owners` (add_owners), `failures`
(ending as failed: written ahead, then cleaned up), `stuck` (StuckSweep: the safety net),
`lifecycle` (Lifecycle: approve, decommission) and `outcomes` (settle_provisioned: hand an
active registration to rotation and announce it).
"""
