"""Publish and play authorization: signed URLs and the secret they are signed with.

- ``signing``: ``?exp=UNIX&sig=HMAC-SHA256(secret, path + exp)``, made and checked (pure).
- ``secret``: the secret from a file or the environment, or made on first start.
- ``exposure``: which listen endpoints reach beyond loopback.
- ``settings``: what a relay checks, from its options.
- ``cli``: the ``rtmprelay sign`` command.

The checks themselves are links of the admission chain (``rtmprelay.relay.admission``).
"""

from rtmprelay.auth.signing import DEFAULT_CLOCK_SKEW, SignatureRefused, check_signature, sign_url, signature, signed_query

__all__ = ["DEFAULT_CLOCK_SKEW", "SignatureRefused", "check_signature", "sign_url", "signature", "signed_query"]
