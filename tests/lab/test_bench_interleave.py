"""Interleaved timing (camsurvey.lab.bench.interleave) and the machine's load (camsurvey.lab.bench.load),
on a fake clock: no test here times anything real."""

import statistics

import pytest

from camsurvey.lab import bench
from camsurvey.lab.bench.interleave import rounds_within


class DriftingMachine:
    """A fake machine whose speed drifts during the run: ``units`` of work take ``units * slowdown(now)``
    fake seconds, and ``clock()`` reads the fake time."""

    def __init__(self, slowdown):
        self.now, self.slowdown = 0.0, slowdown

    def clock(self) -> float:
        return self.now

    def work(self, units: float):
        def run():
            self.now += units * self.slowdown(self.now)
        return run


DRIFTS = {
    "load rising steadily": lambda t: 1 + t / 100,  # 25 % slower after 25 fake seconds
    "a heavy process starts": lambda t: 1.0 if t < 10 else 2.5,  # the issue: another job shares the machine
}
TRUE_RATIO = 3.0  # contender B does three times A's work


def sequential_ratio(slowdown, repeats=7) -> float:
    """The old way: every repeat of A (after a warm-up), then every repeat of B; ratio of medians."""
    machine = DriftingMachine(slowdown)
    a, b = machine.work(1.0), machine.work(TRUE_RATIO)
    times_a = bench.time_call(a, repeats, 1, clock=machine.clock)
    times_b = bench.time_call(b, repeats, 1, clock=machine.clock)
    return statistics.median(times_b) / statistics.median(times_a)


def interleaved_ratio(slowdown, seed, repeats=7) -> dict:
    machine = DriftingMachine(slowdown)
    a, b = machine.work(1.0), machine.work(TRUE_RATIO)
    a(), b()  # one warm-up call each
    times = bench.interleave({"A": a, "B": b}, repeats, seed, clock=machine.clock)["times_s"]
    return bench.compare(times["B"], times["A"])


@pytest.mark.parametrize("drift", sorted(DRIFTS))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_interleaved_ratio_stays_within_5_percent_of_the_true_ratio_while_the_machine_drifts(drift, seed):
    measured = interleaved_ratio(DRIFTS[drift], seed)
    assert abs(measured["median"] / TRUE_RATIO - 1) < 0.05
    assert measured["pairs"] == 7 and measured["min"] <= measured["median"] <= measured["max"]


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_sequential_ratio_fails_the_same_test(drift):
    # the old protocol measures the drift, not the contenders: proof that the test above can fail
    assert abs(sequential_ratio(DRIFTS[drift]) / TRUE_RATIO - 1) > 0.05


def test_interleaved_ratio_is_exact_on_a_machine_whose_speed_is_constant():
    measured = interleaved_ratio(lambda t: 1.7, seed=0, repeats=5)
    assert measured == pytest.approx({"median": 3.0, "min": 3.0, "max": 3.0, "pairs": 5, "disagree": False})


def test_every_round_calls_every_contender_once_in_an_order_shuffled_with_the_seed():
    orders = bench.round_orders(["A", "B", "C"], 20, seed=0)
    assert all(sorted(order) == ["A", "B", "C"] for order in orders)
    assert orders == bench.round_orders(["A", "B", "C"], 20, seed=0)  # fixed seed: the same orders
    assert orders != bench.round_orders(["A", "B", "C"], 20, seed=1)
    firsts = {order[0] for order in orders}
    assert firsts == {"A", "B", "C"}  # shuffled: no contender always goes first (nor always last)
    calls = []
    timed = bench.interleave({name: (lambda name=name: calls.append(name)) for name in "AB"}, 4, seed=3,
                             clock=lambda: float(len(calls)))
    assert calls == [name for order in timed["order"] for name in order]
    assert timed["times_s"] == {"A": [1.0] * 4, "B": [1.0] * 4}


def test_a_comparison_whose_pairs_disagree_by_more_than_the_stated_factor_is_flagged():
    assert not bench.summarize_ratios([2.0, 2.2, 2.9])["disagree"]  # 1.45x apart <= 1.5
    flagged = bench.summarize_ratios([2.0, 2.2, 3.1])  # 1.55x apart
    assert flagged["disagree"] and flagged["median"] == 2.2 and (flagged["min"], flagged["max"]) == (2.0, 3.1)
    assert not bench.summarize_ratios([2.0, 3.1], disagreement=2.0)["disagree"]
    assert not bench.summarize_ratios([5.0])["disagree"]  # one pair has no spread to disagree with
    assert bench.DISAGREEMENT == 1.5


def test_pair_ratios_refuse_series_of_other_lengths_and_non_positive_times():
    assert bench.pair_ratios([2.0, 6.0], [1.0, 2.0]) == [2.0, 3.0]
    with pytest.raises(ValueError, match="equally long"):
        bench.pair_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        bench.pair_ratios([1.0], [0.0])
    with pytest.raises(ValueError, match="factor >= 1"):
        bench.summarize_ratios([1.0], disagreement=0.5)


def test_rounds_are_cut_to_the_time_budget_of_the_slowest_contender_never_below_one():
    assert rounds_within(3, 60.0, [0.1, 10.0]) == 3
    assert rounds_within(3, 60.0, [0.1, 25.0]) == 2
    assert rounds_within(3, 60.0, [0.1, 90.0]) == 1
    assert rounds_within(3, None, [0.1, 90.0]) == 3


class FakeLoad:
    """A fake load average and process CPU clock, advanced by hand."""

    def __init__(self, load):
        self.load, self.cpu, self.wall = load, 0.0, 0.0

    def monitor(self, threads, busy_load=bench.BUSY_LOAD):
        return bench.LoadMonitor(threads, busy_load, load=lambda: self.load, cpu=lambda: self.cpu,
                                 clock=lambda: self.wall)

    def run(self, wall, cpu):
        self.wall, self.cpu = self.wall + wall, self.cpu + cpu


def test_load_flag_is_raised_when_the_fake_load_of_other_processes_exceeds_the_threshold():
    fake = FakeLoad(load=1.2)
    monitor = fake.monitor(threads=2)  # our own 2 threads can explain a load of 2
    monitor.sample()
    fake.run(wall=1.0, cpu=1.9)
    monitor.sample()
    fake.load = 2.4  # others: 0.4 <= 0.5
    monitor.sample()
    quiet = monitor.summary()
    assert not quiet["busy"] and quiet["others_load"] == pytest.approx(0.4)
    assert quiet["cpu_per_wall"] == pytest.approx(1.9) and quiet["load_during_max"] == 1.2
    fake.load = 3.8  # another process with 2 busy threads shares the machine
    fake.run(wall=1.0, cpu=1.0)
    monitor.sample()
    busy = monitor.summary()
    assert busy["busy"] and busy["others_load"] == pytest.approx(1.8) and busy["load_after"] == 3.8
    assert busy["cpu_per_wall"] == pytest.approx(2.9 / 2.0)  # it got fewer CPU seconds per wall second
    lenient = fake.monitor(threads=2, busy_load=2.0)  # the threshold is a stated parameter
    lenient.sample(), lenient.sample()
    assert not lenient.summary()["busy"] and lenient.summary()["busy_load"] == 2.0
    with pytest.raises(ValueError, match="busy_load"):
        fake.monitor(threads=2, busy_load=-1)


def test_others_load_never_blames_other_processes_for_our_own_threads():
    assert bench.others_load(2.0, threads=2) == 0.0
    assert bench.others_load(1.3, threads=2) == 0.0
    assert bench.others_load(3.5, threads=1) == 2.5


def test_process_cpu_seconds_counts_the_cpu_this_process_used():
    before = bench.process_cpu_seconds()
    sum(i * i for i in range(300_000))
    assert bench.process_cpu_seconds() > before
