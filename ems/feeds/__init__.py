"""Market prices and a weather forecast fetched live for the planner (docs/feeds.md).

`series`: what a feed returns and the errors it raises; `prices`, `weather`: one adapter per
source; `source`: the refresh task, the last good series and its fallback; `cache`: that
series on disk; `planner_inputs`: where the series meet the planner; `settings`: the site file.
"""
