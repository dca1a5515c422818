mod cron_differential;
mod require;
mod scheduler;
mod support;
