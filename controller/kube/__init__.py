"""Kubernetes plumbing the controller and the kubernetes store share.

Nothing here knows about quota: `api` (a thin JSON client with explicit
timeouts), `watch` (list + watch of one collection, as client-go's reflector
does), `election` (a Lease, with a fencing epoch), `naming` (API groups,
resource plurals, collection paths) and `deadline` (the apiserver's request
deadline, carried from the HTTP layer into a store). It imports nothing else
of `quotalang.controller`, so the stores and the control loop build on it.
"""
