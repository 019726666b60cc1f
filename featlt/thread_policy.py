"""How many torch threads a CPU forward gets beside its decode workers, tried on the first batches.

On CPU the decode workers and the forward pass share the cores. Two choices:

- every core for the forward (``cores`` threads): the fastest forward alone, but a decoding
  worker preempts a forward thread for every image it decodes, and the other threads wait for
  it at the next barrier;
- the cores the workers leave (``cores - workers`` threads): no contention, a slower forward.

Which is faster depends on the backbone, the images and what else the machine is doing (on a
busy machine every extra thread is more likely to be descheduled), so :class:`ThreadTrial`
measures it on the run's own batches: one warm-up batch (worker start, first-call costs), then
rounds in which each candidate runs one batch, timed from asking the loader for the batch
(waiting on decode included) to its features; after a round whose best and second-best seconds
per image differ by :data:`CLEAR_MARGIN`, or after :data:`MAX_ROUNDS` rounds, every further
batch runs at the fastest. A run that ends during the trial keeps the fastest seen so far.
Seen on this project's 2-core machine (1 decode worker, quiet): ``tf_efficientnet_lite0`` at
160 px and ``mobilenetv3_small_100`` at 96 px were both faster with 2 threads; under load from
other jobs the light model was faster with 1 (results/extract_benchmark.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field

WARMUP_BATCHES = 1
MAX_ROUNDS = 3
CLEAR_MARGIN = 1.2  # second-best / best seconds per image that ends the trial early


@dataclass(frozen=True)
class ThreadChoice:
    """The forward's torch threads and why; ``asdict`` of it goes into the run record."""

    threads: int
    reason: str
    # milliseconds per image of each timed trial batch, by thread count; None without a trial
    trial_ms_per_image: dict[int, list[float]] | None = None


@dataclass
class ThreadTrial:
    """Round-robin over ``candidates`` thread counts on the first batches, then the fastest.

    Use: ``threads = trial.next_threads()`` before fetching a batch, ``trial.record(threads,
    seconds, images)`` once its features exist; :meth:`choice` says what was chosen and why.
    A single candidate is no trial (``fixed_reason`` says why it is the only one).
    """

    candidates: tuple[int, ...]
    fixed_reason: str = ""
    timings: dict[int, list[float]] = field(default_factory=dict)  # seconds per image
    decided: int | None = None
    batches: int = 0

    def __post_init__(self) -> None:
        self.timings = {t: [] for t in self.candidates}
        if len(self.candidates) == 1:
            self.decided = self.candidates[0]

    def next_threads(self) -> int:
        """Thread count for the next batch."""
        if self.decided is not None:
            return self.decided
        if self.batches < WARMUP_BATCHES:
            return self.candidates[0]
        return min(self.candidates, key=lambda t: len(self.timings[t]))  # ties: first listed

    def record(self, threads: int, seconds: float, images: int) -> None:
        """A batch of ``images`` took ``seconds`` at ``threads`` threads; decide after a round."""
        self.batches += 1
        if self.decided is not None or self.batches <= WARMUP_BATCHES or images == 0:
            return
        self.timings[threads].append(seconds / images)
        rounds = min(len(v) for v in self.timings.values())
        if rounds == 0 or any(len(v) != rounds for v in self.timings.values()):
            return  # the round is not complete
        ranked = self._ranked()
        margin = self._best(ranked[1]) / self._best(ranked[0])
        if margin >= CLEAR_MARGIN or rounds >= MAX_ROUNDS:
            self.decided = ranked[0]

    def choice(self) -> ThreadChoice:
        """The thread count the run settled on (or the fastest so far) and the evidence."""
        if len(self.candidates) == 1:
            return ThreadChoice(self.candidates[0], self.fixed_reason)
        trial = {t: [round(s * 1e3, 3) for s in v] for t, v in self.timings.items()}
        timed = [t for t in self.candidates if self.timings[t]]
        if self.decided is not None:
            threads = self.decided
            reason = "fastest per image on the first batches"
        elif timed:
            threads = min(timed, key=self._best)
            reason = "the run ended during the trial; fastest per image so far"
        else:
            threads, reason = self.candidates[0], "the run ended before any timed batch"
        return ThreadChoice(threads, f"trial: {reason}", trial)

    def _best(self, threads: int) -> float:
        return min(self.timings[threads])

    def _ranked(self) -> list[int]:
        return sorted(self.candidates, key=self._best)
