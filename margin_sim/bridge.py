"""Barrier crossings between knots of a path: the Brownian-bridge survival kernel.

Given a *buffer* (a distance to a barrier that is positive while safe) known at the knots of a
path, and the variance of the buffer's diffusion between the knots, the probability that the
buffer touched zero in between is, for a Brownian bridge (Beaglehole, Dybvig and Zhou 1997,
"Going to extremes", Financial Analysts Journal 53(1)),

    P(min <= 0 | B0, B1) = exp(-2 B0 B1 / V),   B0, B1 > 0,

and 1 when either end is at or below zero. For one asset the buffer is the log-price distance
to the barrier and V = vol^2 dt exactly; for a portfolio the buffer is money and V the variance
of its linearisation in the log prices over the step (DESIGN.md section 5).

A grid step may contain events (jumps, wick troughs). The step is then split at the event
times: bridge segments between knots, and point checks at the troughs and after the jumps.
All functions here work on whole arrays; nothing loops over paths or steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from margin_sim._typing import FloatArray, IntArray

_LN2 = 0.6931471805599453

__all__ = ["EventKnots", "bridge_log_survival", "patch_event_steps", "step_log_survival"]


def bridge_log_survival(b0: FloatArray, b1: FloatArray, variance: FloatArray) -> FloatArray:
    """Log probability that a Brownian bridge from ``b0`` to ``b1`` stays above zero.

    Parameters
    ----------
    b0, b1 : array
        Buffer at the two ends (any unit; positive = safe). ``+inf`` means no barrier.
    variance : array
        Variance of the buffer's diffusion between the ends, in the buffer's unit squared.
        Zero variance means a straight line between the ends.

    Returns
    -------
    array
        ``log(1 - exp(-2 b0 b1 / variance))`` where both ends are positive, ``-inf`` where
        either end is at or below zero.

    Examples
    --------
    >>> float(np.exp(bridge_log_survival(np.array(0.1), np.array(0.1), np.array(0.02))))
    0.6321205588285577
    """
    b0, b1, variance = np.broadcast_arrays(
        np.asarray(b0, float), np.asarray(b1, float), np.asarray(variance, float)
    )
    safe = (b0 > 0) & (b1 > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exponent = np.where(safe & (variance > 0), -2.0 * b0 * b1 / variance, -np.inf)
        exponent = np.where(np.isnan(exponent), -np.inf, exponent)  # inf * 0: no barrier
        # log(1 - e^x): log(-expm1(x)) near x = 0, log1p(-e^x) below -ln 2 (both accurate there)
        log_survival = np.where(
            exponent > -_LN2, np.log(-np.expm1(exponent)), np.log1p(-np.exp(exponent))
        )
    return np.where(safe, log_survival, -np.inf)


@dataclass(frozen=True)
class EventKnots:
    """Buffer values at the events inside grid steps (all arrays of shape ``(m,)``).

    Attributes
    ----------
    path, step : int arrays
        Row in the chunk and grid step of each event, sorted by (path, step, frac).
    frac : float array
        Position of the event within its step, in (0, 1).
    before, trough, after : float arrays
        Buffer just before the event, at its trough (equal to ``before`` for a plain jump),
        and right after it (the path restarts there).
    """

    path: IntArray
    step: IntArray
    frac: FloatArray
    before: FloatArray
    trough: FloatArray
    after: FloatArray

    @property
    def first_in_step(self) -> np.ndarray:
        """True for the first event of its (path, step)."""
        same = (self.path[1:] == self.path[:-1]) & (self.step[1:] == self.step[:-1])
        return np.concatenate([[True], ~same]) if self.path.size else np.zeros(0, bool)

    @property
    def last_in_step(self) -> np.ndarray:
        """True for the last event of its (path, step)."""
        same = (self.path[1:] == self.path[:-1]) & (self.step[1:] == self.step[:-1])
        return np.concatenate([~same, [True]]) if self.path.size else np.zeros(0, bool)


def step_log_survival(
    start: FloatArray,
    end: FloatArray,
    variance: FloatArray,
    events: EventKnots | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Per-step log probability that the buffer stays positive, events included.

    Parameters
    ----------
    start, end : array, shape (n, steps)
        Buffer at the start and the end of every grid step.
    variance : array, broadcastable to (n, steps)
        Variance of the buffer's diffusion over a whole step.
    events : EventKnots, optional
        Knots inside steps; those steps are split at the event times.

    Returns
    -------
    log_survival : array, shape (n, steps)
        Log probability of no crossing in each step, given the knots.
    event_log_survival : array, shape (n, steps)
        The part of ``log_survival`` due to the point checks at the events alone (troughs and
        post-jump values), 0 in steps without events; used where another barrier is nearer
        and only a gap can reach this one.
    """
    start = np.asarray(start, float)
    end = np.asarray(end, float)
    variance = np.broadcast_to(np.asarray(variance, float), start.shape)
    log_survival = bridge_log_survival(start, end, variance)
    if events is None or events.path.size == 0:
        return log_survival, np.zeros_like(log_survival)
    rows, steps = events.path, events.step
    event_part = patch_event_steps(
        log_survival, start[rows, steps], end[rows, steps], variance[rows, steps], events
    )
    return log_survival, event_part


def patch_event_steps(
    log_survival: FloatArray,
    start: FloatArray,
    end: FloatArray,
    variance: FloatArray,
    events: EventKnots,
) -> FloatArray:
    """Replace, in place, the survival of every step that holds events by its split value.

    Parameters
    ----------
    log_survival : array (n, steps)
        Grid-only log survivals; the steps holding events are overwritten.
    start, end, variance : arrays (m,)
        For each event, the buffer at the start and end of its step and the buffer's variance
        over the whole step.
    events : EventKnots

    Returns
    -------
    array (n, steps)
        The part due to the point checks at the events (0 elsewhere).
    """
    event_part = np.zeros_like(log_survival)
    if events.path.size == 0:
        return event_part
    rows, steps = events.path, events.step
    first, last = events.first_in_step, events.last_in_step
    previous_frac = np.where(first, 0.0, np.roll(events.frac, 1))
    previous_buffer = np.where(first, start, np.roll(events.after, 1))
    lead = bridge_log_survival(
        previous_buffer, events.before, variance * (events.frac - previous_frac)
    )
    point = np.where((events.trough > 0) & (events.after > 0), 0.0, -np.inf)
    trail = np.where(
        last, bridge_log_survival(events.after, end, variance * (1.0 - events.frac)), 0.0
    )
    log_survival[rows, steps] = 0.0
    np.add.at(log_survival, (rows, steps), lead + point + trail)
    np.add.at(event_part, (rows, steps), point)
    return event_part
