mod bwrap_escape;
mod bwrap_launch;
mod bwrap_limits;
mod common;
mod docker;
