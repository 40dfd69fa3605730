"""Questions a data team asks of the datasets, as duckdb SQL over the warehouse views.

`make demo` prints their answers and docs/datasets.md shows them; a test runs each one.
"""

EVENTS_PER_HOUR = """
SELECT date_trunc('hour', event_time) AS hour,
       count(*) AS events,
       count(*) FILTER (WHERE kind = 'event' AND item_id IS NOT NULL OR list_count(items_shown) > 0) AS with_items,
       count(DISTINCT user_id) AS users
FROM raw_events
GROUP BY 1 ORDER BY 1 DESC LIMIT 12
"""

TOP_ITEMS_BY_NET_WEIGHT = """
SELECT item_id,
       round(sum(net_weight), 2) AS net_weight,
       count(*) AS users,
       count(*) FILTER (WHERE negative) AS users_negative
FROM user_item_scores
GROUP BY 1 ORDER BY 2 DESC LIMIT 10
"""

CLICK_RATE_BY_FEED = """
WITH shown AS (
    SELECT feed_type, user_id, item_id, min(event_time) AS first_shown, count(*) AS times_shown
    FROM impressions GROUP BY ALL
), clicked AS (
    SELECT user_id, item_id, min(event_time) AS first_click
    FROM interactions WHERE event_type = 'click' GROUP BY ALL
)
SELECT shown.feed_type,
       sum(times_shown) AS impressions,
       count(clicked.item_id) AS clicked,
       round(count(clicked.item_id) / sum(times_shown), 4) AS click_rate
FROM shown
LEFT JOIN clicked
  ON clicked.user_id = shown.user_id AND clicked.item_id = shown.item_id AND clicked.first_click >= shown.first_shown
GROUP BY 1 ORDER BY impressions DESC
"""

DEMO_QUERIES = {
    "Events per hour (event time)": EVENTS_PER_HOUR,
    "Top items by net weight": TOP_ITEMS_BY_NET_WEIGHT,
    "Impression-to-click rate by feed": CLICK_RATE_BY_FEED,
}
