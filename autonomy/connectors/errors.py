"""The one error a connector raises."""


class ConnectorError(Exception):
    """The system refused or failed; the message is safe to show (no secrets).

    ``status`` is the system's own status code when it answered (an HTTP status), else None.
    """

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status
