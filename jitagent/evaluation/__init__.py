"""Evaluation: how well a run kept its promises, as every benchmark and every traced call scores it.

:mod:`jitagent.evaluation.goodput` scores a run's request records over a window (service goodput,
SLO attainment, latency figures); :mod:`jitagent.evaluation.outcome` gives one call's verdict
(deadline, slack, met, goodput tokens) by the same rule. Nothing here schedules: no policy
imports it.
"""
