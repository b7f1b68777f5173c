"""Services: batches, re-checks, people, purge, the schedule."""
