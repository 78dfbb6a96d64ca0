"""Benchmarks for xmppkit and for the peer libraries it is compared with."""
