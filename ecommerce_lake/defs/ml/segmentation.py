"""Customer segments (group ``ml``): RFM scores, K-means clusters and the segment summary, scored daily."""

import dagster as dg
from pyspark.sql import DataFrame

from ecommerce_lake.core.segment_rules import rules_markdown
from ecommerce_lake.defs.keys import CURATED_KEYS, ML_KEYS, REFINED_KEYS
from ecommerce_lake.defs.ml.checks import CHECKS
from ecommerce_lake.defs.resources import AsOfConfig, QualityResource, SegmentationConfig
from ecommerce_lake.defs.tables import emit, table_asset
from ecommerce_lake.logic.ml import segments
from ecommerce_lake.platform.lake import LakeResource


def _kw(table: str, **extra) -> dict:
    return table_asset(CHECKS[table], **extra)


@dg.multi_asset(**_kw("rfm_scores", segment_rules=dg.MetadataValue.md(rules_markdown())),
                ins={"orders": dg.AssetIn(CURATED_KEYS["customer_orders"])})
def rfm_scores(context: dg.AssetExecutionContext, config: AsOfConfig, orders: DataFrame,
               segmentation: SegmentationConfig, lake: LakeResource, quality: QualityResource):
    def compute():
        as_of = config.day(segmentation.as_of) or segments.latest_order_date(orders)
        if as_of is None:
            raise dg.Failure("curated.customer_orders holds no sold order: nothing to score")
        context.log.info(f"RFM as of {as_of}")
        return dg.Output(segments.rfm_scores(orders, as_of), output_name="rfm_scores", metadata={
            "as_of": str(as_of), "segment_rules": dg.MetadataValue.md(rules_markdown())})

    yield from emit(context, lake, quality, {"rfm_scores": compute}, [CHECKS["rfm_scores"]])


@dg.multi_asset(**_kw("customer_clusters"), ins={"rfm": dg.AssetIn(ML_KEYS["rfm_scores"])})
def customer_clusters(context: dg.AssetExecutionContext, rfm: DataFrame, lake: LakeResource,
                      quality: QualityResource):
    def compute():
        result = segments.customer_clusters(rfm)
        centroids = "\n".join(
            f"| {c['cluster_id']} | {c['label']} | {c['recency_days']:.0f} | {c['frequency']:.2f} | "
            f"{c['monetary_kes']:,.0f} |" for c in result.centroids)
        return dg.Output(result.clusters, output_name="customer_clusters", metadata={
            "k": result.k,
            **{f"silhouette/k={k}": dg.MetadataValue.float(round(v, 4)) for k, v in result.silhouettes.items()},
            "centroids": dg.MetadataValue.md("| cluster | label | recency (days) | frequency | monetary (KES) |\n"
                                             "|---|---|---|---|---|\n" + centroids),
        })

    yield from emit(context, lake, quality, {"customer_clusters": compute}, [CHECKS["customer_clusters"]])


@dg.multi_asset(**_kw("segment_summary"),
                ins={"rfm": dg.AssetIn(ML_KEYS["rfm_scores"]), "counties": dg.AssetIn(REFINED_KEYS["counties"])})
def segment_summary(context: dg.AssetExecutionContext, rfm: DataFrame, counties: DataFrame, lake: LakeResource,
                    quality: QualityResource):
    yield from emit(context, lake, quality, {"segment_summary": lambda: segments.segment_summary(rfm, counties)},
                    [CHECKS["segment_summary"]])


ASSETS = [rfm_scores, customer_clusters, segment_summary]
