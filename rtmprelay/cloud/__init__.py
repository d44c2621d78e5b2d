"""Calls from the relay to the cloud: upstream-URL lookup and webhooks.

The routes are the old relay's, so the cloud side needs no change:

- ``GET  {base}/api/rtmp-relay/cf-url/{userId}/{streamId}``: the upstream URL.
- ``POST {base}/api/rtmp-relay/hls-ready``: ``{"userId", "streamId", "hlsUrl", "dashUrl"}``.
- ``POST {base}/api/rtmp-relay/stream-ended``: ``{"userId", "streamId"}``.
"""

from rtmprelay.cloud.client import *  # noqa: F403 - the public names are client's __all__
from rtmprelay.cloud.client import __all__  # noqa: F401
