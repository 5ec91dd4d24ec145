"""The benchmark behind ``python -m zerocopy bench``: scenarios, methods, runner."""
