"""Ratify v1 external verifier plugin for ATProto signature artifacts.

Ratify runs the plugin once per referenced artifact, as a child process: environment variables
and a JSON document on stdin in, one JSON line on stdout out (the contract, with its traps, is in
``shared/specs/ratify-plugin.md``). The verification itself is :mod:`atcr_verify`'s
``Verifier.verify_artifact``; this package only speaks the wire format, keeps a disk cache shared
between invocations (a fresh process has no warm memory) and can delegate to a running provider.

Nothing here imports the core at module level: a warm-cache answer never loads it.
"""
