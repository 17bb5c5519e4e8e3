"""Keep secrets out of what Loopline prints and logs: URLs are shown with their password masked."""

from __future__ import annotations

import re

MASK = "***"
# Query parameters that carry a secret in the URLs Loopline handles (libpq's ``?password=``, tokens, keys).
_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:password|passwd|pwd|sslpassword|secret|token|access_token|api_key|apikey)=)[^&#]*")


def mask_url(url: str) -> str:
    """``url`` with the password of its user info and any secret query parameter replaced by ``***``.

    ``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``; ``redis://:pw@h:6379/0`` →
    ``redis://:***@h:6379/0``; a password holding ``@``, ``:``, ``/`` or even ``?`` is masked whole, and so is a
    ``password=`` (or ``token=``...) query parameter. A URL without a password, or text that is not a URL, is
    returned as is. When in doubt this masks too much rather than too little.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head_end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    # The user info ends at the last '@' before the query; with none there, a '?' or '#' may belong to an
    # unescaped password, so the last '@' of all is taken.
    at = rest.rfind("@", 0, head_end)
    if at < 0:
        at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:{MASK}{rest[at:]}"
    return scheme + sep + _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, rest)
