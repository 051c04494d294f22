"""mtls-deploy's benchmarks: ``inv bench [--only NAME] [--quick]``; see bench/README.md."""
