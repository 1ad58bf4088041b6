"""Real-time logic: order events from Kafka into 5-minute county windows (plain DataFrame functions)."""
