"""Sample results the bench's unit tests share."""

from __future__ import annotations

from fanout.bench.results import Broadcast, Percentiles, Rss

BROADCAST = Broadcast(
    connections=101000,
    processes=2,
    shards=51,
    posts=101000,
    seconds=50.5,
    posts_per_s=2000.0,
    point_to_point_posts_per_s=2500.0,
    over_point_to_point=0.8,
    worker_cpu_us_per_post=110.0,
    worker_cpu_share=0.22,
    others_cpu_share=1.5,
    secantus_cpu_share=0.7,
    emulator_cpu_share=0.3,
    lookup_ms_mean=250.0,
    rss_mb=Rss(180.0, 184.5, 183.0, 3.0),
    urgent_ms=Percentiles(40.0, 400.0, 900.0, 250),
    insert_s=90.0,
)
