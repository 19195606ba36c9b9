"""The local stack: a real Apache Kafka broker (KRaft) and a MariaDB instance, started from the
project's state folder so they never fight with a system instance. ``rehab stack up|down|status``."""
