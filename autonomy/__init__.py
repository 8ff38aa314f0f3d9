"""Autonomy OS: the OS kernel. The Django project around it is ``config``."""
