"""`quotalang lsp`: a language server for `.quota` policies (pygls, the `lsp` extra).

A core-layer package: it reads the same loader, checker, compiler and
formatter as the CLI and never imports the controller or the server. The
pure parts (`analysis`, `index`, `convert`, `hover`, `navigation`,
`completion`, `actions`) take plain data and return lsprotocol types, so they
are tested without a client; `service` is the pygls wiring.
"""
