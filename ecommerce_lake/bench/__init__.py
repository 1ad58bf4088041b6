"""Benchmark and baseline tooling (``ecommerce-lake bench``, ``ecommerce-lake plain-build``): not the product.

* ``suites``: the benchmarks that print figures (``--suite lake``, ``--suite interactive``, ``--scales``);
* ``session``: one shared SparkSession against one JVM per step (``--suite session``);
* ``plain``: the lake built by the same transformation functions in one plain PySpark program, the baseline of
  the orchestration overhead.
"""
