"""The benchmark behind ``python -m zerocopy bench``: scenarios, methods, runner.

Only what the command needs lives here (and ships in the wheel); what the
scripts in benchmarks/ alone use is their kit, ``benchmarks/kit``.
"""
