"""What ``benchmarks/serve_peers.py`` runs: the peer servers, the ceiling, the wrk script and their set-up."""
