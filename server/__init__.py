"""The admission webhook: starlette app, TLS, policy hot reload, metrics, manifests.

One module per job, kopf-style: `admission` (the AdmissionReview types and
their validation), `engine` (a request → a decision through the ledger),
`responses` (the AdmissionResponse builder), `app` (the HTTP routes),
`metrics`, `logs`, `reload` (policy hot reload), `tls`, `manifests`, and
`cli` / `serve` wiring them into `quotalang serve` and `quotalang manifests`.
Nothing here is imported by `quotalang` or `controller`.
"""
