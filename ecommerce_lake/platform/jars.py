"""JVM jars the Spark session needs, resolved from Maven Central once and cached.

The jars are pinned by coordinates *and* SHA-256, grouped by feature:

* ``delta``  – always on the classpath (Delta Lake for Spark 4.0);
* ``s3``     – hadoop-aws (must equal the Hadoop inside the pyspark wheel, 3.4.1) and the AWS SDK v2 bundle;
  fetched when the lake or landing zone is on S3, or with ``ecommerce-lake setup --all``;
* ``postgres`` – the PostgreSQL JDBC driver for a Hive metastore server (``setup --all``).

They are downloaded into ``ECOMMERCE_LAKE_JARS_DIR`` (default ``~/.cache/ecommerce_lake/jars``) over HTTPS,
verified, and moved into place atomically. A jar that is already present with the right checksum is never
fetched again, so a second run works with the network cut. Transitive dependencies are listed explicitly:
Spark already ships Scala, ANTLR and the Hadoop client, so the lists are short and reviewable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SPARK_VERSION = "4.0.1"
DELTA_VERSION = "4.0.1"
HADOOP_VERSION = "3.4.1"


@dataclass(frozen=True)
class Jar:
    group: str
    artifact: str
    version: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    def url(self, repo: str) -> str:
        return f"{repo.rstrip('/')}/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.filename}"


JAR_GROUPS: dict[str, tuple[Jar, ...]] = {
    "delta": (
        Jar("io.delta", "delta-spark_2.13", DELTA_VERSION,
            "a1e76860b19fe1e6b205a4ea7a9099a2f9575d39bb71d49b3e679b299d0efb91", 7731162),
        Jar("io.delta", "delta-storage", DELTA_VERSION,
            "ecc42c5aaa51c423312d9e4e48aa4a12b34740bf2c37de0e8f279277ec3d12e4", 78832),
    ),
    "s3": (
        Jar("org.apache.hadoop", "hadoop-aws", HADOOP_VERSION,
            "01334a07e179cae2b7e251f24857f11e3759108c9d6a79dcbe362a4295227da2", 865554),
        Jar("software.amazon.awssdk", "bundle", "2.24.6",
            "890bf9f2a80488f7a8aa8277d64d13a9ea3a3cdff8607ef3b63a878d8b467b41", 558001584),
        Jar("org.wildfly.openssl", "wildfly-openssl", "1.1.3.Final",
            "4e7d50a877822ba7561fa6a0109691b30b23a784eba3f3f8fbbf5ea866500786", 436580),
    ),
    # For a Hive metastore server backed by PostgreSQL (docker/bin/hive-metastore); never on Spark's classpath.
    "postgres": (
        Jar("org.postgresql", "postgresql", "42.7.4",
            "188976721ead8e8627eb6d8389d500dccc0c9bebd885268a3047180274a6031e", 1086687),
    ),
}


class JarResolutionError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_valid(path: Path, jar: Jar) -> bool:
    # Size first (cheap); the checksum was verified when the file was moved into place.
    return path.is_file() and path.stat().st_size == jar.size


def _download(jar: Jar, dest: Path, repo: str, attempts: int = 3) -> None:
    url = jar.url(repo)
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        tmp = None
        try:
            started = time.monotonic()
            log.info("downloading %s (%.1f MB) from %s", jar.coordinate, jar.size / 1e6, url)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{jar.filename}.", dir=dest.parent)
            tmp = Path(tmp_name)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                digest = hashlib.sha256()
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != jar.sha256:
                raise JarResolutionError(
                    f"checksum mismatch for {jar.coordinate} from {url}: got {digest.hexdigest()}, "
                    f"expected {jar.sha256}"
                )
            os.replace(tmp, dest)  # atomic: a half-written jar never carries the final name
            log.info("cached %s in %.1f s", dest, time.monotonic() - started)
            return
        except JarResolutionError:
            raise
        except Exception as exc:  # network errors: retry, then fail loudly
            last = exc
            time.sleep(min(2**attempt, 10))
        finally:
            if tmp is not None and tmp.exists():
                tmp.unlink()
    raise JarResolutionError(
        f"could not download {jar.coordinate} from {url} after {attempts} attempts: {last}. "
        "Run `ecommerce-lake setup` where Maven Central is reachable, or copy the jar into the jars "
        "directory (ECOMMERCE_LAKE_JARS_DIR)."
    )


def resolve_jars(
    groups: tuple[str, ...] | list[str],
    jars_dir: str | Path,
    repo: str = "https://repo1.maven.org/maven2",
    verify: bool = False,
) -> list[Path]:
    """Return local paths of every jar in ``groups``, downloading only what is missing."""
    directory = Path(jars_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for group in groups:
        if group not in JAR_GROUPS:
            raise JarResolutionError(f"unknown jar group {group!r}; known: {', '.join(JAR_GROUPS)}")
        for jar in JAR_GROUPS[group]:
            path = directory / jar.filename
            if not _is_valid(path, jar) or (verify and _sha256(path) != jar.sha256):
                _download(jar, path, repo)
            paths.append(path)
    return paths
