mod crash;
mod cron_differential;
mod ipc_auth;
mod require;
mod router;
mod scheduler;
mod support;
mod task_lifecycle;
