"""rtmprelay: an RTMP relay that cleans dirty live streams at packet level."""

from rtmprelay.errors import RelayError

__all__ = ["RelayError", "__version__"]
__version__ = "0.1.0"
