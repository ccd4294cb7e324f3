"""Worker-side logic: fetch, decode, infer and store. Task wrappers live in ``tasks.tag``.

Importing this package must stay cheap (no torch): the producer uses ``tasks.store``.
"""
