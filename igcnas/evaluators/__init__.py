"""Measuring networks: costs (fvcore, torch's flop counter, latency), data and training."""
