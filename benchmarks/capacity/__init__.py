"""The capacity model: how many 2-core replicas a day's uploads need, and what users then wait.

A discrete-event simulation (simpy) driven only by committed measurements:

* :mod:`.inputs` reads them: ``make bench``'s ``benchmarks/results/summary.json`` (closed-loop
  users 1/2/4/8) and ``benchmarks/results/service_times.json`` (per-video 1-user times, stage
  split, replica start → ready);
* :mod:`.replica` is one replica: the 2-core box, its videos sharing it with the measured
  speed-up at each concurrency;
* :mod:`.hpa` is the Kubernetes HorizontalPodAutoscaler's algorithm (formula, tolerance,
  stabilisation windows, rate policies);
* :mod:`.cluster` puts replicas, the job queue, Poisson arrivals and the autoscaler together;
* :mod:`.experiments` runs the calibration, the arrival-rate sweep and the three daily volumes;
* :mod:`.bottleneck` turns the stage split into where the time goes;
* :mod:`.report` writes ``docs/capacity.md`` and ``docs/capacity.png`` from the result JSON.

Run ``python -m fakescope.benchmarks.capacity`` (``make capacity``).
"""
