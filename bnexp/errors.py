"""Errors a user can cause and fix: printed as one message, never a traceback."""


class UserError(Exception):
    """Bad input (configuration, data, file system): the message says what to do."""


class ConfigError(UserError):
    """A configuration value is out of range or malformed."""


class DataError(UserError):
    """The dataset is missing, incomplete or corrupt."""
