"""The picture of a simulated day: per queue, the requests waiting and the SL
over the day (means over the replications), with matplotlib, an optional
extra: `pip install 'redroute[sim]'`."""

from __future__ import annotations

import logging
from typing import Any

INSTALL = "the plot needs matplotlib: pip install 'redroute[sim]' (or pip install matplotlib)"


class PlotUnavailable(RuntimeError):
    pass


def plot_day(series: dict[str, Any], path: str, title: str = "") -> None:
    """Writes a PNG of the series of report.day_series to path."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font cache notice
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(INSTALL) from None
    step_h = series["bucketMs"] / 3_600_000
    fig, (ax_wait, ax_sl) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    for queue_id, s in series["queues"].items():
        hours = [i * step_h for i in range(len(s["waiting"]) + 1)]  # each bucket's edges
        ax_wait.step(hours, [*s["waiting"], s["waiting"][-1]], where="post", label=queue_id)
        sl = [float("nan") if x is None else x for x in s["sl"]]
        ax_sl.step(hours, [*sl, sl[-1]], where="post", label=queue_id)
    offered = ax_wait.twinx()  # the day's shape, behind the waiting line
    per_hour = [sum(x) / step_h for x in zip(*(s["offered"] for s in series["queues"].values()),
                                            strict=True)]
    offered.bar([i * step_h for i in range(len(per_hour))], per_hour, width=step_h, align="edge",
                color="0.85", zorder=0)
    offered.set_ylabel("arrivals per hour (all queues)", color="0.45")
    ax_wait.set_zorder(offered.get_zorder() + 1)
    ax_wait.patch.set_visible(False)
    ax_wait.set_ylabel("requests waiting (mean)")
    ax_sl.set_ylabel("service level")
    ax_sl.set_ylim(0, 1.02)
    ax_sl.set_xlabel("hour of the day (by arrival)")
    for ax in (ax_wait, ax_sl):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
