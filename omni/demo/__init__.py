"""The built-in demo world: a synthetic action world generator and a loopback file server.

Not part of the pipeline: the core library never imports it.
"""
