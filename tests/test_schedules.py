"""Every schedule against its formula; the lr ⇄ batch-size conversion keeps η/S equal."""

import math

import pytest

from tfminima import config, schedules


def sched(text):
    return config.load_text(f"epochs: 12\nlr_schedule: {text}\n", "s.yaml").lr_schedule


def values(text, epochs=12):
    s = sched(text)
    return [schedules.multiplier(s, e, epochs) for e in range(epochs)]


def test_constant():
    assert values("{kind: constant}") == [1.0] * 12


def test_step():
    got = values("{kind: step, milestones: [3, 8], factor: 0.1}")
    expect = [0.1 ** ((e >= 3) + (e >= 8)) for e in range(12)]
    assert got == pytest.approx(expect, rel=1e-15)


def test_linear():
    got = values("{kind: linear, end_factor: 0.2, start_epoch: 2, end_epoch: 10}")
    expect = [1 + (0.2 - 1) * min(max((e - 2) / 8, 0), 1) for e in range(12)]
    assert got == pytest.approx(expect, rel=1e-15)
    default_end = values("{kind: linear, end_factor: 0.5}")
    assert default_end[0] == 1.0 and default_end[-1] == pytest.approx(0.5)


def test_exponential():
    assert values("{kind: exponential, gamma: 0.9}") == pytest.approx([0.9**e for e in range(12)], rel=1e-15)


def test_cyclic_triangular():
    got = values("{kind: cyclic_triangular, low: 0.2, high: 1.0, period: 4, start: low}")
    tri = [0, 0.5, 1, 0.5]
    assert got == pytest.approx([0.2 + 0.8 * tri[e % 4] for e in range(12)], rel=1e-15)
    high_first = values("{kind: cyclic_triangular, low: 0.2, high: 1.0, period: 4}")
    assert high_first[:4] == pytest.approx([1.0, 0.6, 0.2, 0.6])


def test_cyclic_discrete():
    got = values("{kind: cyclic_discrete, low: 1, high: 5, stage: 3}")
    assert got == [5, 5, 5, 1, 1, 1, 5, 5, 5, 1, 1, 1]
    got = values("{kind: cyclic_discrete, low: 1, high: 5, stage: 2, start: low}")
    assert got[:4] == [1, 1, 5, 5]


def test_table_repeats_last_value():
    assert values("{kind: table, values: [1, 0.5, 0.25]}")[:5] == [1, 0.5, 0.25, 0.25, 0.25]


def plan(text, replicas=1):
    return schedules.plan(config.load_text(text, "p.yaml"), replicas)


def test_lr_schedule_as_batch_size_schedule_keeps_eta_over_s():
    # The paper's E3: cyclic lr 0.001 <-> 0.005 at S=128  ==  cyclic S 128 <-> 640 at lr 0.005.
    base = ("epochs: 8\ndataset: {train_size: 2000}\noptimizer: {lr: 0.005, batch_size: 128}\n"
            "lr_schedule: {kind: cyclic_discrete, low: 0.2, high: 1.0, stage: 2}\n")
    lr_plan = plan(base)
    bs_plan = plan(base + "schedule_conversion: lr_to_batch_size\n")
    assert [p.lr for p in lr_plan] == pytest.approx([0.005, 0.005, 0.001, 0.001] * 2)
    assert {p.lr for p in bs_plan} == {0.005}
    assert [p.batch_size for p in bs_plan] == [128, 128, 640, 640] * 2
    for a, b in zip(lr_plan, bs_plan):
        assert a.eta_over_s == pytest.approx(b.eta_over_s, rel=1e-12)


def test_step_decay_as_increasing_batch_size_and_back():
    base = ("epochs: 10\ndataset: {train_size: 20000}\noptimizer: {lr: 0.1, batch_size: 100}\n"
            "lr_schedule: {kind: step, milestones: [4, 7], factor: 0.2}\n")
    original = plan(base)
    as_bs = plan(base + "schedule_conversion: lr_to_batch_size\n")
    assert [p.batch_size for p in as_bs] == [100] * 4 + [500] * 3 + [2500] * 3
    assert [p.eta_over_s for p in as_bs] == pytest.approx([p.eta_over_s for p in original], rel=1e-12)
    # ... and the batch-size schedule converted back into a learning-rate schedule
    back_text = ("epochs: 10\ndataset: {train_size: 20000}\noptimizer: {lr: 0.1, batch_size: 100}\n"
                 "batch_size_schedule: {kind: step, milestones: [4, 7], factor: 5}\n"
                 "schedule_conversion: batch_size_to_lr\n")
    back = plan(back_text)
    assert {p.batch_size for p in back} == {100}
    assert [p.eta_over_s for p in back] == pytest.approx([p.eta_over_s for p in original], rel=1e-12)


def test_rounded_batch_sizes_correct_the_lr_so_eta_over_s_is_exact():
    text = ("epochs: 6\ndataset: {train_size: 5000}\noptimizer: {lr: 0.1, batch_size: 100}\n"
            "lr_schedule: {kind: exponential, gamma: 0.7}\nschedule_conversion: lr_to_batch_size\n")
    original, converted = plan(text.replace("schedule_conversion: lr_to_batch_size\n", "")), plan(text, replicas=2)
    for a, b in zip(original, converted):
        assert b.batch_size % 2 == 0 and isinstance(b.batch_size, int)
        assert b.eta_over_s == pytest.approx(a.eta_over_s, rel=1e-12)
        assert b.lr == pytest.approx(0.1, rel=0.02)  # a correction of at most the rounding


def test_round_batch_size():
    assert schedules.round_batch_size(127.4) == 127
    assert schedules.round_batch_size(127.4, replicas=2) == 128
    assert schedules.round_batch_size(0.3) == 1
    assert math.isclose(schedules.EpochSetting(0, 0.1, 50).eta_over_s, 0.002)
