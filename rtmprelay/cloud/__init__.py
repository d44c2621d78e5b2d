"""Calls from the relay to the cloud: upstream-URL lookup and webhooks.

The routes are the old relay's, so the cloud side needs no change:

- ``GET  {base}/api/rtmp-relay/cf-url/{userId}/{streamId}``: the upstream URL.
- ``POST {base}/api/rtmp-relay/hls-ready``: ``{"userId", "streamId", "hlsUrl", "dashUrl"}``.
- ``POST {base}/api/rtmp-relay/stream-ended``: ``{"userId", "streamId"}``.
"""

from rtmprelay.cloud.client import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    UPSTREAM_URL_FIELDS,
    CloudClient,
    CloudConfig,
    CloudError,
    parse_upstream_url,
    sign_body,
)

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "UPSTREAM_URL_FIELDS",
    "CloudClient",
    "CloudConfig",
    "CloudError",
    "parse_upstream_url",
    "sign_body",
]
