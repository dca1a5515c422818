mod crash;
mod cron_differential;
mod ipc_auth;
mod router;
mod scheduler;
mod support;
