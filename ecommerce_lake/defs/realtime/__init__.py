"""The realtime group: order events from Kafka into 5-minute county windows (``realtime/county_sales_5min`` and its
side tables), refreshed by the ``kafka_events_sensor`` when the topic holds events the stream has not processed."""

import dagster as dg

from ecommerce_lake.defs.realtime.assets import county_sales_stream
from ecommerce_lake.defs.realtime.sensors import kafka_events_sensor

defs = dg.Definitions(assets=[county_sales_stream], sensors=[kafka_events_sensor])
