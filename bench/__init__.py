"""``make bench``: bulktag's throughput benchmark (``python -m bench --help``).

One run builds a corpus of camera-size JPEGs and measures, side by side, the seed-style
one-image-at-a-time pipeline, the model alone, the in-process decode+model limit, the
real thing end to end (redis-server + ``bulktag worker`` + ``bulktag submit --wait``)
and a fully deduplicated resubmit, for the exact and the fastest hot path, with their
agreement against the fp32 reference. Results go to docs/BENCHMARKS.md.
"""
