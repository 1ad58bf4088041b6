"""A local Apache Kafka broker (KRaft: one combined broker and controller) and the lake's Kafka client helpers.

* ``ecommerce-lake kafka start|stop|status``: the broker runs from ``org.apache.kafka:kafka_2.13`` and its runtime
  dependencies (the ``kafka-broker`` jar group, resolved from Maven Central and cached like the Spark jars, pinned
  by SHA-256), in its own JVM, listening on the host and port of ``ECOMMERCE_LAKE_KAFKA_BOOTSTRAP`` (default
  ``127.0.0.1:9092``) and nowhere else. Its state (configuration, data, pid, log) is in
  ``<ECOMMERCE_LAKE_HOME>/kafka/``. In production it is the ``kafka`` service of docker/docker-compose.yml.
* :func:`ensure_topic`, :func:`end_offsets`, :func:`produce`: the admin and producer side, with
  ``confluent-kafka`` (librdkafka): an idempotent producer (``enable.idempotence``), so a retried send is not
  written twice; the stream de-duplicates what an at-least-once producer re-sends on purpose.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ecommerce_lake.platform.servers import LocalServer, free_port, listening, process_alive, tail
from ecommerce_lake.platform.jars import resolve_jars

# librdkafka's own log: errors only (its level-4/6 lines, e.g. "coordinator load in progress: retrying" on a fresh
# broker, are retries it handles itself)
CLIENT_LOG = {"log_level": 3}

STATE_FILE = "kafka.json"
LOG_FILE = "kafka.log"


class KafkaError(RuntimeError):
    """The broker could not be started, reached or stopped, or a topic could not be read; says what to do."""


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise KafkaError(f"ECOMMERCE_LAKE_KAFKA_BOOTSTRAP={bootstrap!r} is not host:port")
    return host, int(port)


SERVER_PROPERTIES = """# Written by `ecommerce-lake kafka start`: one KRaft node, broker and controller, listening on {listen}, advertised
# as {host}.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{listen_host}:{controller_port}
listeners=PLAINTEXT://{listen}:{port},CONTROLLER://{listen_host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions={partitions}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# a week of events: the stream's checkpoint must not fall behind the retention
log.retention.hours=168
"""


@dataclass
class BrokerStatus:
    up: bool
    bootstrap: str
    pid: int | None = None
    started_at: str | None = None
    log: str = ""
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class Broker(LocalServer):
    """The local broker at ``bootstrap``, its state in ``state_dir``, its jars in ``jars_dir``."""

    state_file, log_file = STATE_FILE, LOG_FILE

    def __init__(self, bootstrap: str, state_dir: str | Path, jars_dir: str | Path,
                 maven_repo: str = "https://repo1.maven.org/maven2", partitions: int = 3):
        self.bootstrap, self.dir = bootstrap, Path(state_dir).expanduser()
        self.jars_dir, self.maven_repo, self.partitions = jars_dir, maven_repo, partitions
        self.host, self.port = parse_bootstrap(bootstrap)

    def status(self) -> BrokerStatus:
        state = self.state()
        st = BrokerStatus(False, self.bootstrap, state.get("pid"), state.get("started_at"), str(self.log_path))
        if not listening(self.host, self.port):
            st.detail = "not running" + (f" (stale state of pid {st.pid})" if st.pid and not process_alive(st.pid)
                                         else "")
            return st
        try:
            from confluent_kafka.admin import AdminClient

            AdminClient({"bootstrap.servers": self.bootstrap, **CLIENT_LOG}).list_topics(timeout=5)
        except Exception as exc:  # noqa: BLE001 - something listens there that is not a Kafka broker
            st.up, st.detail = True, f"something listens at {self.bootstrap} but does not answer as Kafka ({exc})"
            return st
        st.up, st.detail = True, "running" + ("" if st.pid and process_alive(st.pid) else
                                              " (not started from this state directory)")
        return st

    def _classpath(self) -> str:
        return ":".join(str(p) for p in resolve_jars(["kafka-broker"], self.jars_dir, self.maven_repo))

    def _java(self, main: str, *args: str, heap: str = "512m") -> list[str]:
        return ["java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                "-Dorg.slf4j.simpleLogger.log.kafka=warn", "-Dorg.slf4j.simpleLogger.log.org.apache.kafka=warn",
                "-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info",
                "-Dorg.slf4j.simpleLogger.showDateTime=true", "-cp", self._classpath(), main, *args]

    def start(self, wait: float = 120.0, progress: Callable[[str], None] = print, listen: str | None = None,
              foreground: bool = False) -> BrokerStatus:
        """Start the broker (format its storage the first time), wait until it answers. ``listen``: the interface
        to bind (default: the bootstrap host; ``0.0.0.0`` in a container, advertised as the bootstrap host);
        ``foreground``: become the broker (a container's main process)."""
        listen = listen or self.host
        if not foreground and listening(self.host, self.port):
            st = self.status()
            if st.pid and process_alive(st.pid):
                progress(f"kafka: already running at {self.bootstrap} (pid {st.pid})")
                return st
            raise KafkaError(f"port {self.port} is in use ({st.detail}); stop it or choose another address in "
                             "ECOMMERCE_LAKE_KAFKA_BOOTSTRAP")
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.dir / "data"
        props = self.dir / "server.properties"
        state = self.state()
        controller_port = state.get("controller_port") or free_port(self.host if listen != "0.0.0.0" else "127.0.0.1",
                                                                     self.port + 1)
        listen_host = "127.0.0.1" if listen == "0.0.0.0" else listen  # the controller stays inside the node
        props.write_text(SERVER_PROPERTIES.format(host=self.host, port=self.port, controller_port=controller_port,
                                                  listen=listen, listen_host=listen_host, data=data,
                                                  partitions=self.partitions))
        started = time.monotonic()
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                                            heap="256m"), capture_output=True, text=True)
            if fmt.returncode != 0:
                raise KafkaError(f"formatting the broker's storage in {data} failed:\n{fmt.stderr[-2000:]}")
            progress(f"kafka: formatted storage {data} (cluster {cluster_id})")
        if foreground:
            self._write_state({"pid": os.getpid(), "bootstrap": self.bootstrap, "controller_port": controller_port,
                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            cmd = self._java("kafka.Kafka", str(props))  # exec keeps this pid
            progress(f"kafka: broker on {listen}:{self.port}, advertised as {self.bootstrap}")
            os.execvp(cmd[0], cmd)
        with self.log_path.open("ab") as out:
            proc = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.dir)
        self._write_state({"pid": proc.pid, "bootstrap": self.bootstrap, "controller_port": controller_port,
                           "log": str(self.log_path), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        progress(f"kafka: starting a broker at {self.bootstrap} (pid {proc.pid}, log {self.log_path})")
        deadline = started + wait
        while not listening(self.host, self.port):
            if proc.poll() is not None:
                self._clear_state()
                raise KafkaError(f"the broker exited with {proc.returncode} while starting:\n{tail(self.log_path)}")
            if time.monotonic() > deadline:
                self._kill(proc.pid)
                raise KafkaError(f"the broker did not listen at {self.bootstrap} within {wait:.0f} s:\n"
                                 f"{tail(self.log_path)}")
            time.sleep(0.2)
        progress(f"kafka: up at {self.bootstrap} in {time.monotonic() - started:.1f} s")
        return self.status()

    def stop(self, timeout: float = 60.0, progress: Callable[[str], None] = print) -> bool:
        state = self.state()
        pid = state.get("pid")
        if not pid or not process_alive(pid):
            self._clear_state()
            if listening(self.host, self.port):
                raise KafkaError(f"something listens at {self.bootstrap} but no broker was started from {self.dir}")
            progress("kafka: not running")
            return False
        self._terminate(pid, timeout)  # SIGTERM: a controlled shutdown, the broker flushes its logs
        progress(f"kafka: stopped (pid {pid})")
        return True

    def _clear_state(self) -> None:
        state = self.state()
        if state.get("controller_port"):  # keep the controller's port: the formatted storage names it
            self._write_state({"controller_port": state["controller_port"]})
        else:
            super()._clear_state()


# ---- clients ------------------------------------------------------------------------------------------
def ensure_topic(bootstrap: str, topic: str, partitions: int = 3, timeout: float = 30.0) -> bool:
    """Create ``topic`` unless it exists; True if it was created."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **CLIENT_LOG})
    try:
        if topic in admin.list_topics(timeout=timeout).topics:
            return False
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        futures[topic].result(timeout=timeout)
        return True
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return False
        raise KafkaError(f"could not create topic {topic!r} at {bootstrap}: {exc}") from exc


def end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """``{partition: next offset}`` of ``topic`` ({} when the topic does not exist)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ecommerce_lake-offsets",
                         "enable.auto.commit": False, **CLIENT_LOG})
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            return {}
        out = {}
        for p in sorted(info.partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            out[p] = int(high)
        return out
    except KafkaException as exc:
        raise KafkaError(f"could not read the end offsets of {topic!r} at {bootstrap}: {exc}") from exc
    finally:
        consumer.close()


@dataclass
class ProduceReport:
    sent: int
    duplicates: int
    seconds: float


def produce(bootstrap: str, topic: str, events: Iterable[dict | bytes], *, rate: float = 0.0,
            duplicates: float = 0.0, seed: int = 7, key_field: str = "order_id",
            progress: Callable[[str], None] | None = None) -> ProduceReport:
    """Send ``events`` (dicts as JSON; bytes as they are) in order, keyed by ``key_field``; ``rate``: events per
    second at most (0: as fast as the broker takes them); ``duplicates``: the share of events sent twice, the copy
    a little later (what an at-least-once producer does after a timeout)."""
    import random

    from confluent_kafka import Producer

    rng = random.Random(seed)
    errors: list[str] = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
                         "compression.type": "lz4", **CLIENT_LOG})
    started, sent, dups, pending = time.monotonic(), 0, 0, []
    for event in events:
        payload = event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode()
        key = None if isinstance(event, bytes) else str(event.get(key_field, "")).encode()
        batch = [(key, payload)]
        if duplicates and rng.random() < duplicates:
            pending.append((key, payload))
            dups += 1
        if pending and rng.random() < 0.5:
            batch.append(pending.pop(0))
        for k, v in batch:
            while True:
                try:
                    producer.produce(topic, v, key=k, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            sent += 1
            if rate:
                wait = started + sent / rate - time.monotonic()
                if wait > 0:
                    producer.poll(wait)
        producer.poll(0)
        if progress and sent % 10000 == 0:
            progress(f"produced {sent} events")
    for k, v in pending:
        producer.produce(topic, v, key=k, on_delivery=delivered)
        sent += 1
    left = producer.flush(60)
    if left or errors:
        raise KafkaError(f"{left} events not delivered to {topic!r} at {bootstrap}; first error: "
                         f"{errors[0] if errors else 'timeout'}")
    return ProduceReport(sent=sent, duplicates=dups, seconds=time.monotonic() - started)
