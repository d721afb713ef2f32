"""Referrer channels: which referring hosts are search engines, social networks or webmail.

The list is Snowplow's referer database (referers.json) as shipped in the `referer-parser` package
on PyPI (Apache License 2.0; a dependency of accesslog, so the data comes with it and is updated by
updating that package). Each referring host is matched by itself or its closest listed parent
domain (news.google.com -> google.com), as referer-parser does. Channels: direct (no referrer),
internal (the site's own hosts), search, social, email, other.
"""
from __future__ import annotations

import functools
import json
from importlib import resources

import pyarrow as pa

CHANNELS = {"search": "search", "social": "social", "email": "email"}   # referers.json medium -> channel


@functools.lru_cache(maxsize=1)
def referrer_domains() -> pa.Table:
    """(domain, channel, source) for every listed domain of the search, social and email media."""
    data = json.loads(resources.files("referer_parser").joinpath("data/referers.json").read_text(encoding="utf-8"))
    rows = {}
    for medium, channel in CHANNELS.items():
        for source, config in data.get(medium, {}).items():
            for domain in config.get("domains", ()):
                rows.setdefault(domain.lower().strip("."), (channel, source))
    domains = sorted(rows)
    return pa.table({"domain": domains, "channel": [rows[d][0] for d in domains],
                     "source": [rows[d][1] for d in domains]})
