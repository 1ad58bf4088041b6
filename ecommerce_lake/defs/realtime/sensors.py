"""The Kafka sensor: requests the stream's asset when the topic's end offsets moved past what the stream's
checkpoint committed, and records the consumer lag as an observation of the asset."""


import json

import dagster as dg

from ecommerce_lake.defs.keys import REALTIME_KEYS
from ecommerce_lake.defs.resources import KafkaResource
from ecommerce_lake.platform import kafka as kafka_client
from ecommerce_lake.platform import stream
from ecommerce_lake.platform.engine import listening
from ecommerce_lake.platform.lake_reader import LakeReaderResource

STREAM_KEYS = [REALTIME_KEYS[t] for t in stream.TABLES]


@dg.sensor(
    name="kafka_events_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    target=dg.AssetSelection.assets(*STREAM_KEYS),
    description="Requests realtime/county_sales_5min when the Kafka topic's end offsets moved past the offsets "
    "the stream's checkpoint committed (cursor: the end offsets last requested); records the consumer lag.",
)
def kafka_events_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource, lake_reader: LakeReaderResource):
    host, port = kafka_client.parse_bootstrap(kafka.bootstrap)
    if not listening(host, port):
        return dg.SkipReason(f"no Kafka broker at {kafka.bootstrap} (ecommerce-lake kafka start)")
    ends = kafka_client.end_offsets(kafka.bootstrap, kafka.topic)
    if not ends:
        return dg.SkipReason(f"topic {kafka.topic} does not exist yet at {kafka.bootstrap}")
    committed = stream.committed_offsets(stream.StreamTables(lake_reader.root).checkpoint, kafka.topic)
    lag = {p: max(0, end - committed.get(p, 0)) for p, end in ends.items()}
    observation = dg.AssetObservation(asset_key=REALTIME_KEYS["county_sales_5min"], metadata={
        "consumer_lag": sum(lag.values()), "lag_by_partition": dg.MetadataValue.json({str(k): v for k, v in lag.items()}),
        "end_offsets": dg.MetadataValue.json({str(k): v for k, v in ends.items()})})
    cursor = json.dumps({str(k): v for k, v in sorted(ends.items())})
    if not sum(lag.values()):
        return dg.SensorResult(skip_reason=dg.SkipReason("the stream has processed everything the topic holds"),
                               asset_events=[observation], cursor=cursor)
    if cursor == context.cursor:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"lag {sum(lag.values())}: already requested for these "
                                                         "end offsets"), asset_events=[observation])
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"kafka:{cursor}")], asset_events=[observation],
                           cursor=cursor)
