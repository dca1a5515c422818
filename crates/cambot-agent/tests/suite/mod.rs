mod crash;
mod cron_differential;
mod ipc_auth;
mod require;
mod router;
mod sandboxed;
mod scheduler;
mod support;
