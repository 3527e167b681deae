"""The pure engine core: no I/O, no clock, no randomness except what derives from the run seed.

Adapters feed it facts (a node finished with these metrics, this much wall time has passed) and ask it
for decisions (what to run next, whether the run is over); the journal it keeps is the whole state.
"""
