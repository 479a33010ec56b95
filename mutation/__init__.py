"""Mutation testing of pascal-ref (issue 17): ``python mutation/run.py``; see docs/mutation.md."""
