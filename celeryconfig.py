"""Static Celery configuration; the broker URL and queue come from Settings in workers/app.py."""

# A run is acknowledged only once it is over, and a worker that dies hands it back.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# With Redis, an unacknowledged task is redelivered after the visibility timeout: keep it far
# above a run's internal deadline (Settings.run_deadline, 900 s) so a slow run never runs twice.
broker_transport_options = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 3,
    "socket_timeout": 10,
    "retry_on_timeout": True,
}
broker_connection_retry_on_startup = True
broker_connection_timeout = 3
# The web process must answer 503 quickly when Redis is down, not retry for minutes.
task_publish_retry = True
task_publish_retry_policy = {
    "max_retries": 1,
    "interval_start": 0.2,
    "interval_step": 0.2,
    "interval_max": 0.5,
}

task_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None
worker_send_task_events = False
task_send_sent_event = False
worker_hijack_root_logger = False
worker_cancel_long_running_tasks_on_connection_loss = False

# Beat keeps its schedule in memory: the only entry runs every few seconds, so there is nothing
# worth persisting, and no schedule file whose folder must exist before beat can start.
beat_scheduler = "celery.beat:Scheduler"

# Warm shutdown waits for running tasks; container platforms should allow it (see README).
worker_soft_shutdown_timeout = 20
