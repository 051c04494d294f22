"""bench/api_throughput.py's arithmetic: the rows measured in turns, and the ratios' medians."""

from bench import api_throughput as bench


def turn(rps: float, complete: int, *, p50=0.5, p99=2.0, cpu=0.1, ab=0.2, seconds=5.0) -> dict:
    return {
        "host": "fleet1", "path": "/whoami", "concurrency": 8, "tls": "TLSv1.3",
        "complete": complete, "failed": 0, "non_2xx": 0, "keep_alive": complete,
        "seconds": seconds, "requests_per_s": rps, "p50_ms": p50, "p99_ms": p99,
        "server_cpu_ms_each": cpu, "ab_cpu_share": ab,
    }  # fmt: skip


def test_merged_sums_counts_and_rates_over_the_whole_time():
    row = bench.merged([turn(1000, 5000, p50=0.4, p99=3.0, cpu=0.1),
                        turn(3000, 12000, p50=0.6, p99=1.0, cpu=0.2)])  # fmt: skip
    assert row["complete"] == 17000 and row["keep_alive"] == 17000 and row["turns"] == 2
    assert row["seconds"] == 10.0 and row["requests_per_s"] == 1700.0
    assert row["p50_ms"] == 0.5 and row["p99_ms"] == 3.0  # the median, the worst
    assert row["server_cpu_ms_each"] == round((500 + 2400) / 17000, 4)  # weighted by requests
    assert row["host"] == "fleet1" and row["concurrency"] == 8


def test_a_failure_in_any_turn_stays_in_the_row():
    bad = turn(1000, 5000) | {"failed": 2, "non_2xx": 1}
    row = bench.merged([turn(1000, 5000), bad])
    assert (row["failed"], row["non_2xx"]) == (2, 1)


def test_ratios_are_medians_of_each_turns_own_ratio():
    def one(ceiling, php, python, floor):
        rates = {bench.CEILING: ceiling, "php /whoami": php, "python /whoami": python,
                 "php bare script (floor)": floor}  # fmt: skip
        return {name: {"requests_per_s": rate} for name, rate in rates.items()}

    # the machine slows down in turn 2: each turn's ratio is what counts, not the sums
    turns = [one(60000, 12000, 13000, 13000), one(30000, 6600, 6000, 7000),
             one(60000, 11000, 12000, 12500)]  # fmt: skip
    ratios = bench.ceiling_ratios(turns)
    assert ratios == {"php /whoami": 0.2, "python /whoami": 0.2, "php bare script (floor)": 0.217}
    assert bench.median_ratio(turns, "php /whoami", "php bare script (floor)") == 0.923
