"""The error every official-format reader raises."""


class ConversionError(ValueError):
    """An official config or checkpoint that cannot be converted; the message says which keys / values."""
