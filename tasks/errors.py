"""The bulktag error tree.

Every failure a user can see is one of these. *Permanent* errors end a URI as
``error`` with the exception's message as the human reason; *transient* ones are
retried (with backoff) before they are allowed to become a final error.
"""


class BulktagError(Exception):
    """Root of every error bulktag raises on purpose."""


class ConfigError(BulktagError):
    """A setting, argument or environment variable is invalid."""


class WeightsError(BulktagError):
    """The model checkpoint is missing, unpinned, tampered with or not ours."""


class StoreUnavailable(BulktagError):
    """Redis (broker and results store) cannot be reached."""


class JobNotFound(BulktagError):
    """No job with that id exists in the results store."""


class JobExists(ConfigError):
    """A job with that id already exists."""


class UriError(BulktagError):
    """One URI could not be tagged; the message is the reason recorded for it."""


class PermanentUriError(UriError):
    """Retrying will not help: the input itself is bad or forbidden."""


class NotFound(PermanentUriError):
    """The object does not exist."""


class NotAllowed(PermanentUriError):
    """The operator's policy forbids reading this URI."""


class TooLarge(PermanentUriError):
    """The object exceeds the byte or pixel limit."""


class DecodeError(PermanentUriError):
    """The bytes are not an image bulktag can decode."""


class UnsupportedUri(PermanentUriError):
    """No fetcher handles this URI scheme."""


class TransientUriError(UriError):
    """A fault that may pass (timeout, 5xx, throttling): worth a retry."""
