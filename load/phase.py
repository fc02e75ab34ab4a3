"""The traffic phase of a flash sale, shared by the shape and the users of a process.

The shape (on the master, or the only process) decides the phase from the run time and
announces each change with a locust message, so that users on every worker see it; users read
`current`. `flash_phase` is the schedule, pure: steady, then a spike, then steady again.
"""

from __future__ import annotations

import logging

log = logging.getLogger("load")

STEADY = "steady"
SPIKE = "spike"
MESSAGE = "load-phase"

current = STEADY


def set_phase(name: str) -> None:
    global current
    current = name


def on_message(environment: object = None, msg: object = None, **_: object) -> None:
    """Listener of MESSAGE: the phase the shape announced."""
    name = str(getattr(msg, "data", STEADY))
    if name != current:
        log.info("flash sale: %s phase (announced)", name)
    set_phase(name)


def flash_phase(t: float, duration: float, spike_at: float, spike_for: float) -> str | None:
    """The phase at `t` seconds into a run of `duration`; None once it is over. The spike runs
    from `spike_at` to `spike_at + spike_for`, both shares of the duration."""
    if t >= duration:
        return None
    start = duration * spike_at
    return SPIKE if start <= t < start + duration * spike_for else STEADY
