"""Exceptions raised by the testbed helpers.

Every message says what failed, where, and what to check, so a researcher
never has to read a traceback from deep inside pymongo or soundfile.
"""


class TestbedError(Exception):
    """Base class of every error the testbed helpers raise on purpose."""

    __test__ = False  # not a pytest test class despite the name


class ConfigError(TestbedError):
    """An environment variable or argument has an unusable value."""


class DatabaseUnreachable(TestbedError):
    """The experiment database did not answer."""


class DatabaseAuthError(TestbedError):
    """The experiment database refused the credentials."""


class UnknownExperiment(TestbedError, LookupError):
    """No experiment has the requested id."""

    def __init__(self, message: str, experiment_id: str, close: list[str]):
        super().__init__(message)
        self.experiment_id = experiment_id
        self.close = close


class RecordingMissing(TestbedError, FileNotFoundError):
    """A recording is not where the experiment says it is."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno tuples
        return str(self.args[0]) if self.args else ""


class NoNistTest(TestbedError, LookupError):
    """An experiment has no NIST test of the requested kind (M2E, access time)."""

    def __init__(self, message: str, experiment_id: str, kind: str, having: list[str]):
        super().__init__(message)
        self.experiment_id = experiment_id
        self.kind = kind
        self.having = having
