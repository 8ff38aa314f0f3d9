"""The workflows API: agents take tasks, read runs, and coordinate through claims and
run-scoped messages."""
