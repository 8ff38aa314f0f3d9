from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Only for its management commands: seed_demo, demo_admin, demo_runs, simulate_fleet,
    import_demo_systems. No models."""

    name = "demo"
    verbose_name = "Autonomy OS demo"
