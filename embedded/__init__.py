"""What only the embedded default (``make run``: a SQLite file and kombu's filesystem broker)
needs, set apart from the kernel. The settings add this app, pick its transport and Celery's
threads pool only when the broker is ``filesystem://``; production never loads it."""
