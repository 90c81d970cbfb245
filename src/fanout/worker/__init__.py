"""The worker: SQS consumer, fan-out of one event, health server and the process pool."""
