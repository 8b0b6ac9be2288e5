"""Notifiers: the outputs that tell people and systems (chat, mail, tickets, SIEMs, SBOM
stores), one module per Postee type, beside the responders of `actions/` that change
things (exec, http, docker, kubernetes). `transport` holds their shared HTTP handling,
`shape` what they do with a template's result. The registry is `actions.REGISTRY`."""
