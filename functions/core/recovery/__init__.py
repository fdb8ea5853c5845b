"""Recovery after a crash: work in flight whose worker died is handed to another one in seconds.

Public surface: `resume` (resume_lapsed, ResumeSweep: the sweep over the in-flight index). The
entries themselves are written by the workers (core/record/inflight.py).
"""
