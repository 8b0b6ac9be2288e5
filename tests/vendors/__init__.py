"""Local stand-ins for the SaaS APIs the notifiers call: real HTTP servers on 127.0.0.1
that check each request against the vendor's documented format (paths, auth header,
required fields) and answer as the vendor does, errors and rate limits included."""
