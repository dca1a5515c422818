mod crash;
mod cron_differential;
mod ipc_auth;
mod router;
mod support;
