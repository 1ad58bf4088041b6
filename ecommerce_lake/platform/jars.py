"""JVM jars the Spark session needs, resolved from Maven Central once and cached.

The jars are pinned by coordinates *and* SHA-256, grouped by feature:

* ``delta``  – always on the classpath (Delta Lake for Spark 4.0);
* ``s3``     – hadoop-aws (must equal the Hadoop inside the pyspark wheel, 3.4.1) and the AWS SDK v2 bundle;
  fetched when the lake or landing zone is on S3, or with ``ecommerce-lake setup --all``;
* ``postgres`` – the PostgreSQL JDBC driver for a Hive metastore server (``setup --all``);
* ``kafka``  – Spark's Kafka source (always on the classpath: the real-time feed);
* ``kafka-broker`` – Apache Kafka 4.1.1 for the local broker (``ecommerce-lake kafka start``, ``setup --all``).

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
    # Spark's Kafka source (the real-time feed). spark-sql-kafka 4.0.1 is not published on Maven Central; 4.0.0 is
    # the same source code line and runs on Spark 4.0.1. kafka-clients and commons-pool2 are what its POM asks.
    "kafka": (
        Jar("org.apache.spark", "spark-sql-kafka-0-10_2.13", "4.0.0",
            "33a3b8b04df4a2e43c9d5bf8ca5972936a1ac662f2714e014d00ef6f27468bf3", 467590),
        Jar("org.apache.spark", "spark-token-provider-kafka-0-10_2.13", "4.0.0",
            "f2be3b76f9e6cbe63379d4e4e0dc14f59dbf056ae2ad16ff15ac108004c86767", 64975),
        Jar("org.apache.kafka", "kafka-clients", "3.9.0",
            "15c1e137f2c2c94398e27abc4060a03b6bde10bf9fac15e8f70c02320b202f18", 9204801),
        Jar("org.apache.commons", "commons-pool2", "2.12.0",
            "6d3bd18df8410f3e31b031aca582cc109342358a62a2759ebd0c4cdf30d06f8b", 150048),
    ),
    # The local Kafka broker (KRaft, `ecommerce-lake kafka start`): org.apache.kafka:kafka_2.13:4.1.1 and its runtime
    # dependencies as `mvn dependency:list -DincludeScope=runtime` gives them, plus slf4j-simple (the POM has no
    # logging backend). Its own JVM and classpath: never on Spark's.
    "kafka-broker": (
        Jar("com.dynatrace.hash4j", "hash4j", "0.22.0",
            "23028a3fd006e530bf495f551083208187cafd8f80624d048eba56442f16a50e", 316573),
        Jar("com.fasterxml.jackson.core", "jackson-annotations", "2.19.0",
            "ead60e9cac0e42b57092b9e2d087ff43536e9477d4486ba393037a8cc156cda7", 78580),
        Jar("com.fasterxml.jackson.core", "jackson-core", "2.19.0",
            "da8e859bac94874528116a25f20c68560e4287acbf27628711b8a4f96b028430", 599926),
        Jar("com.fasterxml.jackson.core", "jackson-databind", "2.19.0",
            "ceda311f476c3b18e1d2b240c94e2dcb9c8d44e70f8afa9facab88bac4ddc03a", 1678748),
        Jar("com.fasterxml.jackson.dataformat", "jackson-dataformat-csv", "2.19.0",
            "bec1150426b0616bb488149b952b45a0dcb16d9416b017c38f6455ad9389bc68", 106990),
        Jar("com.fasterxml.jackson.dataformat", "jackson-dataformat-yaml", "2.19.0",
            "46e54dcbd39d4d12cda18ec9276e7b888e08fc765ea0c77e71662306f0d4abc4", 60230),
        Jar("com.fasterxml.jackson.datatype", "jackson-datatype-jdk8", "2.19.0",
            "04f1a3f9da8155995dd00098d6847cdb9b7af67f4a3028c94031eff017c8e3e5", 36215),
        Jar("com.github.ben-manes.caffeine", "caffeine", "3.2.0",
            "ec411dfdf0c03f25218648ce89861630b71680e5858a9a7278ebac8e55cab3d7", 906581),
        Jar("com.github.luben", "zstd-jni", "1.5.6-10",
            "b6c3237e24b8252a5a9c3a0e1ae30ef8f323412e74bd358548b7a9e527d676df", 7305999),
        Jar("com.google.re2j", "re2j", "1.8",
            "7b52c72156dd7f98b3237a5b35c1d34fba381b21048c89208913ad80a45dfbd7", 114335),
        Jar("com.typesafe.scala-logging", "scala-logging_2.13", "3.9.5",
            "87a3017d3f43e6ace7566fe4c3d615134c6914ff871c8d64bb32ca1d996d0545", 61858),
        Jar("com.yammer.metrics", "metrics-core", "2.2.0",
            "6b7a14a6f34c10f8683f7b5e2f39df0f07b58c7dff0e468ebbc713905c46979c", 82123),
        Jar("commons-beanutils", "commons-beanutils", "1.9.4",
            "7d938c81789028045c08c065e94be75fc280527620d5bd62b519d5838532368a", 246918),
        Jar("commons-collections", "commons-collections", "3.2.2",
            "eeeae917917144a68a741d4c0dff66aa5c5c5fd85593ff217bced3fc8ca783b8", 588337),
        Jar("commons-digester", "commons-digester", "2.1",
            "e0b2b980a84fc6533c5ce291f1917b32c507f62bcad64198fff44368c2196a3d", 196768),
        Jar("commons-logging", "commons-logging", "1.3.2",
            "6b858424f518015f32bfcd1183a373f4a827d72d026b6031da0c91cf0e8f3489", 71613),
        Jar("commons-validator", "commons-validator", "1.9.0",
            "c3c14748e2d78db58df88808740711bd643b32c45ffa7b8a739f00fb467cd7d7", 201424),
        Jar("net.sf.jopt-simple", "jopt-simple", "5.0.4",
            "df26cc58f235f477db07f753ba5a3ab243ebe5789d9f89ecf68dd62ea9a66c28", 78146),
        Jar("net.sourceforge.argparse4j", "argparse4j", "0.7.0",
            "65ceb669d88f63306c680f8088bbf765bbca72d288a61a03703000076c3d3f56", 90347),
        Jar("org.apache.kafka", "kafka-clients", "4.1.1",
            "00247122a572c3d3ae4eb60a50192a5811bc0181f51923d13018600f892e821d", 9766726),
        Jar("org.apache.kafka", "kafka-coordinator-common", "4.1.1",
            "2072fc1ce7e0505149bba22a463a5909a899c6235c4fa696f15c21194a7baf60", 100775),
        Jar("org.apache.kafka", "kafka-group-coordinator-api", "4.1.1",
            "3d1801d2329dcf7d273796a034d61e6c7e0f851f384d0afbdd3a2e6cbd17a968", 11914),
        Jar("org.apache.kafka", "kafka-group-coordinator", "4.1.1",
            "3eb5a673b69d5992cfa86c5436f39adbf4ce284046a4c999ec6af0a8e31c5589", 914943),
        Jar("org.apache.kafka", "kafka-metadata", "4.1.1",
            "a689665751415b6456de1ecb013042cb7ba99ac68fd8c3e8bf28e098feb43218", 840858),
        Jar("org.apache.kafka", "kafka-raft", "4.1.1",
            "4810c93d93d1935dd54de61c5ba130f501c7fe11bc49ccd3ee05ec857818a72a", 309751),
        Jar("org.apache.kafka", "kafka-server-common", "4.1.1",
            "207edecd8322cf6c13d76d84addea7fd0ec441dc8d698cf69df43210ccdc0a94", 371073),
        Jar("org.apache.kafka", "kafka-server", "4.1.1",
            "9f6aff422855491aad54326eca8d604163d6d3a6507cc48ffe3ce6de73caf79a", 219116),
        Jar("org.apache.kafka", "kafka-share-coordinator", "4.1.1",
            "e6bec53428c77bf6579321836d482542a93575f7c08e860a26c9f2c7f6059dac", 111777),
        Jar("org.apache.kafka", "kafka-storage-api", "4.1.1",
            "8c0a712472185d706c6bf5ae24bf5d84a8e396fd4745c708e6146a415f7fa7f7", 26987),
        Jar("org.apache.kafka", "kafka-storage", "4.1.1",
            "1f85b82853eaec0143efbef7e3a4d4be8929ff83a386326431e0c2d0a557e58c", 591039),
        Jar("org.apache.kafka", "kafka-tools-api", "4.1.1",
            "542b08fe20cf872a2d866acdff61ea338b469219dc2ebfae727a1d9ea5737e1a", 9072),
        Jar("org.apache.kafka", "kafka-transaction-coordinator", "4.1.1",
            "a261b5730ac9e3205df7af5d45180d851e9d5f729ce1275c67511a6f51f73755", 50212),
        Jar("org.apache.kafka", "kafka_2.13", "4.1.1",
            "e89428126cc7630a802123ba27aac4442816840b66d60670226feaff65f24fd1", 2063699),
        Jar("org.apache.logging.log4j", "log4j-api", "2.24.3",
            "5b4a0a0cd0e751ded431c162442bdbdd53328d1f8bb2bae5fc1bbeee0f66d80f", 348513),
        Jar("org.apache.logging.log4j", "log4j-core", "2.24.3",
            "7eb4084596ae25bd3c61698e48e8d0ab65a9260758884ed5cbb9c6e55c44a56a", 1914666),
        Jar("org.bitbucket.b_c", "jose4j", "0.9.6",
            "7314af50cde9c99e8eaf43eee617a23edcc6bb43036221064355094999d837ef", 299502),
        Jar("org.hdrhistogram", "HdrHistogram", "2.2.2",
            "22d1d4316c4ec13a68b559e98c8256d69071593731da96136640f864fa14fad8", 177206),
        Jar("org.jspecify", "jspecify", "1.0.0",
            "1fad6e6be7557781e4d33729d49ae1cdc8fdda6fe477bb0cc68ce351eafdfbab", 3819),
        Jar("org.lz4", "lz4-java", "1.8.0",
            "d74a3334fb35195009b338a951f918203d6bbca3d1d359033dc33edd1cadc9ef", 682804),
        Jar("org.pcollections", "pcollections", "4.0.2",
            "2bbeef5797a241300c4f7513cd546239629ed7deda4fc0c31df90bb95f5f13ef", 73718),
        Jar("org.scala-lang", "scala-library", "2.13.16",
            "1ebb2b6f9e4eb4022497c19b1e1e825019c08514f962aaac197145f88ed730f1", 5926340),
        Jar("org.scala-lang", "scala-reflect", "2.13.16",
            "fb49ccd9cac7464486ab993cda20a3c1569d8ef26f052e897577ad2a4970fb1d", 3801119),
        Jar("org.slf4j", "slf4j-api", "1.7.36",
            "d3ef575e3e4979678dc01bf1dcce51021493b4d11fb7f1be8ad982877c16a1c0", 41125),
        Jar("org.slf4j", "slf4j-simple", "1.7.36",
            "2f39bed943d624dfa8f4102d0571283a10870b6aa36f197a8a506f147010c10f", 15333),
        Jar("org.xerial.snappy", "snappy-java", "1.1.10.7",
            "4c766cb3f855415ee734b2392949a0b6f12a60879334a74518deaf6270d32e36", 2338496),
        Jar("org.yaml", "snakeyaml", "2.4",
            "ef779af5d29a9dde8cc70ce0341f5c6f7735e23edff9685ceaa9d35359b7bb7f", 339825),
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
